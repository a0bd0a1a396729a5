"""The normalised access path to one image file: frames, metadata, lazy reads."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError

#: Axes that index frames (everything but Y, X and channels), in frame-id order.
FRAME_AXES = "STZ"
_FRAME_PART = re.compile(r"^([A-Z])(\d+)$")


@dataclass(frozen=True)
class ImageMeta:
    """What is known about an image file without reading its pixels.

    Attributes
    ----------
    axes
        Axis letters of the file as a whole, e.g. ``"STZYXC"`` (S = series/scene).
    shape
        Size along each of ``axes``.
    sizes
        ``{axis: size}`` for ``axes``.
    dtype
        NumPy dtype name of the pixels.
    pixel_size
        ``(y, x)`` in micrometres when the file says so, else ``None``.
    extra
        Reader-specific details (channel names, series names...).
    """

    axes: str
    shape: tuple[int, ...]
    sizes: dict[str, int]
    dtype: str
    pixel_size: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)


def frame_id(index: Mapping[str, int]) -> str:
    """Frame id such as ``"S0_T3_Z1"`` from ``{"S": 0, "T": 3, "Z": 1}``."""
    return "_".join(f"{axis}{index[axis]}" for axis in sorted(index, key=_axis_order))


def parse_frame_id(fid: str) -> dict[str, int]:
    """``"S0_T3"`` -> ``{"S": 0, "T": 3}``; ``""`` -> ``{}``.

    Raises
    ------
    ValueError
        When *fid* is not a frame id.
    """
    if not fid:
        return {}
    out = {}
    for part in fid.split("_"):
        m = _FRAME_PART.match(part)
        if not m:
            raise ValueError(f"{fid!r} is not a frame id (expected e.g. 'S0_T3_Z1')")
        out[m.group(1)] = int(m.group(2))
    return out


def _axis_order(axis: str) -> tuple[int, str]:
    return (FRAME_AXES.index(axis), axis) if axis in FRAME_AXES else (len(FRAME_AXES), axis)


class ImageSource:
    """One opened image file.

    Readers build it from the frame axes' sizes and a function that reads one plane set
    (all channels of one frame). Nothing is read until :meth:`read`.

    Parameters
    ----------
    path
        The file.
    frame_sizes
        ``{axis: size}`` of the axes that index frames; axes of size 1 get no part in frame ids.
    read_plane
        ``read_plane({axis: index}) -> array (Y, X, C)`` for one frame (all frame axes given).
    meta
        The file's :class:`ImageMeta`.
    close
        Releases the file handle, if the reader keeps one.
    """

    def __init__(
        self,
        path: str | Path,
        frame_sizes: Mapping[str, int] | Sequence[Mapping[str, int]],
        read_plane: Callable[[dict[str, int]], np.ndarray],
        meta: ImageMeta,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.meta = meta
        self._read_plane = read_plane
        self._close = close
        if isinstance(frame_sizes, Mapping):
            scenes = [dict(frame_sizes)]
        else:  # one mapping per scene (S): scenes may differ in their other axes
            scenes = [dict(sizes, S=i) for i, sizes in enumerate(frame_sizes)]
        self._scenes: list[dict[str, int]] = []
        self.frames: list[str] = []
        for sizes in scenes:
            fixed = {"S": sizes.pop("S")} if "S" in sizes and len(scenes) > 1 else {}
            sizes = {a: int(n) for a, n in sorted(sizes.items(), key=lambda kv: _axis_order(kv[0]))}
            self._scenes.append(sizes)
            varying = [a for a, n in sizes.items() if n > 1]
            for combo in itertools.product(*(range(sizes[a]) for a in varying)):
                self.frames.append(frame_id({**fixed, **dict(zip(varying, combo))}))
        self.frames = self.frames or [""]
        self._frame_set = set(self.frames)

    def __repr__(self) -> str:
        return f"ImageSource({str(self.path)!r}, frames={len(self.frames)}, axes={self.meta.axes!r})"

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def channel_names(self) -> list[str]:
        """A name per channel of a frame: the file's own (``meta.extra["channel_names"]``) or ``channel 0``, ..."""
        n = self.meta.sizes.get("C", 1)
        named = [str(c) for c in self.meta.extra.get("channel_names") or []]
        return named if len(named) == n and all(named) else [f"channel {i}" for i in range(n)]

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the underlying file handle."""
        if self._close is not None:
            self._close()
            self._close = None

    def read(self, frame_id: str = "") -> np.ndarray:
        """Read one frame as ``(Y, X, C)``.

        Parameters
        ----------
        frame_id
            One of :attr:`frames`; ``""`` reads the first frame.

        Raises
        ------
        ImageReadError
            When the frame does not exist or its pixels cannot be read.
        """
        if frame_id not in self._frame_set and not (frame_id == "" and self.frames):
            raise ImageReadError(f"{self.path} has no frame {frame_id!r} (frames: {_describe(self.frames)}).")
        parts = parse_frame_id(frame_id or self.frames[0])
        scene = parts.get("S", 0) if len(self._scenes) > 1 else 0
        index = {a: parts.get(a, 0) for a in self._scenes[scene]}
        if len(self._scenes) > 1:
            index["S"] = scene
        try:
            plane = self._read_plane(index)
        except ImageReadError:
            raise
        except Exception as exc:  # reader libraries raise anything on corrupt data
            raise ImageReadError(f"Cannot read frame {frame_id or '0'} of {self.path}: {exc} (is the file truncated?).") from exc
        return as_yxc(plane, self.path)


def as_yxc(arr: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Check that *arr* is a 2-D or channel-last 3-D image and return it as ``(Y, X, C)``."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind not in "uifb":
        raise ImageReadError(f"{path} does not hold pixel values (dtype {arr.dtype}).")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or min(arr.shape[:2]) < 2:
        raise ImageReadError(f"{path} has shape {arr.shape}, which cannot be an image plane (Y, X[, C]).")
    return arr


def _describe(frames: Sequence[str]) -> str:
    if len(frames) <= 4:
        return ", ".join(repr(f) for f in frames)
    return f"{frames[0]!r} ... {frames[-1]!r}, {len(frames)} in all"
