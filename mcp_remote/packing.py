"""Turning local images and labels into pickle-free files for upload.

A server never unpickles, so ``_seg.npy`` label files (pickled dicts) are not sent. Each
labelled frame goes up as ``<name>.npy`` (the frame's pixels, channel-last) with
``<name>_masks.tif`` (mask ids) and ``<name>_classes.tif`` (per-pixel class, numbered in the
order of the class names sent with the job), which the server's training reads as a
``_masks``/``_classes`` pair. Frames to segment go up as ``<name>.npy``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from mcp_core.classmap import IGNORE, class_lookup, labelled_frames, merged_class_names
from mcp_core.errors import ParameterError
from mcp_core.filenames import image_stem
from mcp_core.io import image_files, open_image


def upload_name(stem: str, frame: str, taken: set[str]) -> str:
    """A server-acceptable, unused file stem for one frame of an image."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{stem}__{frame}" if frame else stem).strip("._-")[:150] or "image"
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name.lower())
    return name


def pack_training(folder: str | os.PathLike, out: Path, class_names: Sequence[str] = (),
                  class_colors: Sequence[str] = ()) -> tuple[list[tuple[str, Path]], list[str], list[str]]:
    """Write the labelled frames of *folder* as upload files in *out*.

    Returns
    -------
    files
        ``(file name, local path)`` to upload.
    names, colors
        The class names (and colours) the class TIFFs are numbered by, as training locally would
        choose them (empty when there is no class head).

    Raises
    ------
    ParameterError
        When *folder* holds no labelled frame.
    """
    frames = labelled_frames(folder)
    if not frames:
        raise ParameterError(f"No labelled images in {folder}: label some frames first.")
    names, colors = merged_class_names([ls for _, _, ls in frames], class_names, class_colors)
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Path]] = []
    taken: set[str] = set()
    for path, frame, labels in frames:
        name = upload_name(image_stem(path), frame, taken)
        with open_image(path) as src:
            pixels = np.ascontiguousarray(src.read(frame))
        np.save(out / f"{name}.npy", pixels, allow_pickle=False)
        masks = labels.masks
        tifffile.imwrite(out / f"{name}_masks.tif", masks)
        files += [(f"{name}.npy", out / f"{name}.npy"), (f"{name}_masks.tif", out / f"{name}_masks.tif")]
        if names:
            per_mask = class_lookup(labels, names)  # model class per mask id, IGNORE for unassigned
            per_mask = np.where(per_mask == IGNORE, 0, per_mask).astype(np.uint16)
            per_mask[0] = 0
            tifffile.imwrite(out / f"{name}_classes.tif", per_mask[masks])
            files.append((f"{name}_classes.tif", out / f"{name}_classes.tif"))
    return files, names, colors


def pack_frames(paths: Sequence[str | os.PathLike], out: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str, str]]]:
    """Write every frame of the images (folders expanded) as ``.npy`` files in *out*.

    Returns
    -------
    files
        ``(file name, local path)`` to upload.
    origin
        ``(file name, original image path, frame)`` to put predictions back beside the images.
    """
    files: list[tuple[str, Path]] = []
    origin: list[tuple[str, str, str]] = []
    taken: set[str] = set()
    out.mkdir(parents=True, exist_ok=True)
    for path in image_files(paths):
        with open_image(path) as src:
            for frame in src.frames:
                name = upload_name(image_stem(path), frame, taken)
                np.save(out / f"{name}.npy", np.ascontiguousarray(src.read(frame)), allow_pickle=False)
                files.append((f"{name}.npy", out / f"{name}.npy"))
                origin.append((f"{name}.npy", str(path), frame))
    if not files:
        raise ParameterError("No images to segment.")
    return files, origin
