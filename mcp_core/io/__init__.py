"""Image input: one lazy, channel-last access path over every supported format.

>>> src = open_image("cells.ome.tif")
>>> src.frames                # ['T0_Z0', 'T0_Z1', ...] or [''] for a single plane
>>> plane = src.read(src.frames[3])   # (Y, X, C)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import natsort

from ..atomic import is_temporary
from ..errors import ImageReadError
from ..filenames import is_derived
from .registry import Reader, hookimpl, reader_for, readers
from .source import ImageMeta, ImageSource, as_yxc, frame_id, parse_frame_id

#: Endings of images that are folders (OME-Zarr).
FOLDER_FORMATS = (".zarr",)

__all__ = [
    "ImageMeta",
    "ImageSource",
    "Reader",
    "as_yxc",
    "frame_id",
    "hookimpl",
    "image_files",
    "list_formats",
    "list_images",
    "open_image",
    "parse_frame_id",
    "read_frame",
]


def open_image(path: str | os.PathLike) -> ImageSource:
    """Open an image file lazily.

    Parameters
    ----------
    path
        Any file a registered reader handles (see :func:`list_formats`).

    Returns
    -------
    ImageSource
        ``frames``, ``meta`` and ``read(frame_id)``; close it (or use ``with``) when done.

    Raises
    ------
    ImageReadError
        The path does not exist, is a label file, has an unknown extension, or is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path} does not exist.")
    if path.is_dir() and not path.name.lower().endswith(FOLDER_FORMATS):
        raise ImageReadError(f"{path} is a folder, not an image file.")
    if is_derived(path):
        raise ImageReadError(f"{path} is a label or prediction file, not an image.")
    reader = reader_for(path)
    if reader is None:
        raise ImageReadError(
            f"{path} has an unknown image type {''.join(path.suffixes) or '(no extension)'}; "
            f"supported: {', '.join(sorted({e for r in readers() for e in r.extensions}))}."
        )
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"{path} is empty (0 bytes).")
    try:
        return reader.open(path)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"{path} cannot be read as {reader.name}: {exc}.") from exc


def read_frame(path: str | os.PathLike, frame: str = "") -> "np.ndarray":  # noqa: F821
    """Open *path*, read one frame as ``(Y, X, C)`` and close it again."""
    with open_image(path) as src:
        return src.read(frame)


def list_formats() -> dict[str, tuple[str, ...]]:
    """``{reader name: extensions}`` of every registered reader."""
    return {r.name: r.extensions for r in readers()}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of *folder* in natural order, without label, prediction or temporary files.

    Raises
    ------
    ImageReadError
        When *folder* is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is not a folder.")
    found = [
        p
        for p in folder.iterdir()
        if (p.is_file() or p.name.lower().endswith(FOLDER_FORMATS))
        and not p.name.startswith(".")
        and not is_temporary(p)
        and not is_derived(p)
        and reader_for(p) is not None
        and not (p.suffix.lower() == ".inf")
    ]
    return natsort.natsorted(found, key=lambda p: p.name, alg=natsort.ns.IGNORECASE)


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files of *paths*, folders expanded to their images (labels and predictions left out).

    Raises
    ------
    ImageReadError
        When a path does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not p.name.lower().endswith(FOLDER_FORMATS):
            out.extend(list_images(p))
        elif p.exists():
            out.append(p)
        else:
            raise ImageReadError(f"{p} does not exist.")
    return out
