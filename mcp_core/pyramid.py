"""Resolution levels of one frame for display: a small level for the whole view, full resolution where zoomed.

A viewer shows an image at a scale (screen pixels per image pixel). Below scale 1 it needs no more
than one image pixel per screen pixel: :meth:`Pyramid.level_for` picks the coarsest level that is
still that fine, and :meth:`Pyramid.tile` reads one fixed-size tile of a level, so a viewer of a
large image fetches the overview and then only the tiles its viewport shows.

Levels come from the file when it has them (OME-Zarr ``multiscales``, read lazily, chunk by chunk:
:func:`open_pyramid`) or, for an image already in memory, are strided views of it (``image[::2, ::2]``
and so on: nothing is computed until a region is read).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io.source import parse_frame_id

#: Side in level pixels of the tiles a viewer fetches.
TILE = 512
#: Levels of an in-memory image stop once both sides are at most this.
SMALLEST = 256

Reader = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> (Y, X, C)


@dataclass
class Pyramid:
    """Levels of one frame, full resolution first.

    Attributes
    ----------
    shapes
        ``(height, width)`` of each level.
    readers
        Per level, ``read(y0, y1, x0, x1)`` returning those pixels as ``(Y, X, C)``.
    """

    shapes: list[tuple[int, int]]
    readers: list[Reader]

    @classmethod
    def of_array(cls, image: np.ndarray, smallest: int = SMALLEST) -> Pyramid:
        """Levels of a ``(Y, X, C)`` array: every second pixel of the level before, down to *smallest*."""
        levels = [image]
        while max(levels[-1].shape[:2]) > smallest:
            levels.append(levels[-1][::2, ::2])
        return cls([lv.shape[:2] for lv in levels],
                   [lambda y0, y1, x0, x1, lv=lv: lv[y0:y1, x0:x1] for lv in levels])

    @property
    def shape(self) -> tuple[int, int]:
        """Full-resolution ``(height, width)``."""
        return self.shapes[0]

    def factor(self, level: int) -> float:
        """Full-resolution pixels per pixel of *level* (along the longer side)."""
        full, this = self.shapes[0], self.shapes[level]
        return max(full[0] / this[0], full[1] / this[1])

    def level_for(self, scale: float) -> int:
        """The coarsest level with at least one pixel per screen pixel at *scale* (screen pixels per full-res pixel)."""
        best = 0
        for level in range(len(self.shapes)):
            if self.factor(level) * scale <= 1.0 + 1e-9:
                best = level
        return best

    def level_within(self, max_side: int) -> int:
        """The finest level whose longer side is at most *max_side* (the coarsest when none is)."""
        for level, (h, w) in enumerate(self.shapes):
            if max(h, w) <= max_side:
                return level
        return len(self.shapes) - 1

    def read(self, level: int, y0: int = 0, y1: int | None = None, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of *level* (clipped to it) as ``(Y, X, C)``; the whole level by default.

        Raises
        ------
        IndexError
            When *level* is not one of the levels.
        """
        if not 0 <= level < len(self.shapes):
            raise IndexError(f"level {level} does not exist: this image has levels 0-{len(self.shapes) - 1}.")
        h, w = self.shapes[level]
        y1, x1 = h if y1 is None else min(y1, h), w if x1 is None else min(x1, w)
        return self.readers[level](max(y0, 0), y1, max(x0, 0), x1)

    def tile(self, level: int, ty: int, tx: int, size: int = TILE) -> np.ndarray:
        """Tile ``(ty, tx)`` of *level*: ``size`` x ``size`` level pixels, smaller at the level's right and bottom edges.

        Raises
        ------
        IndexError
            When the level or the tile does not exist.
        """
        if not 0 <= level < len(self.shapes):
            raise IndexError(f"level {level} does not exist: this image has levels 0-{len(self.shapes) - 1}.")
        h, w = self.shapes[level]
        if not (0 <= ty < math.ceil(h / size) and 0 <= tx < math.ceil(w / size)):
            raise IndexError(f"tile ({ty}, {tx}) is outside level {level} ({h}x{w} pixels in {size}-pixel tiles).")
        return self.read(level, ty * size, (ty + 1) * size, tx * size, (tx + 1) * size)


def open_pyramid(path: str | os.PathLike, frame: str = "") -> Pyramid | None:
    """The stored levels of one frame of an OME-Zarr image (read lazily), or ``None`` for other files.

    Raises
    ------
    ImageReadError
        When *path* is an OME-Zarr folder that cannot be read.
    """
    path = Path(path)
    if not (path.is_dir() and path.name.lower().endswith(".zarr")):
        return None
    from .io.zarr_reader import open_levels

    index = parse_frame_id(frame)
    levels = open_levels(path)
    return Pyramid([lv.shape_yx for lv in levels],
                   [lambda y0, y1, x0, x1, lv=lv: lv.read(y0, y1, x0, x1, index) for lv in levels])
