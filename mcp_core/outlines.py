"""Exact outlines of labelled objects as polygons along pixel edges.

Vertices are pixel corners: pixel ``(row i, column j)`` spans ``x`` in ``[j, j + 1]`` and ``y``
in ``[i, i + 1]`` (the convention of ImageJ and QuPath), so a polygon filled by pixel centres
gives back exactly the object's pixels and its area is the pixel count. Objects are traced
4-connected: pixels touching only at a corner become separate rings. Outer rings run
counter-clockwise in ``(x, y)`` (positive signed area), holes clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.measure import points_in_poly

# Edge directions: 0 = +x, 1 = +y, 2 = -x, 3 = -y; a "right turn" in image coordinates is d + 1.
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])


@dataclass
class Outline:
    """The outline of one object: polygons (outer ring and its holes), largest first.

    Each ring is an ``(N, 2)`` float array of ``(x, y)`` corners, not repeating the first.
    """

    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = field(default_factory=list)

    @property
    def outer(self) -> np.ndarray:
        """The largest outer ring."""
        return self.polygons[0][0]


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring of ``(x, y)`` points (positive for our outer rings)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def trace_rings(mask: np.ndarray) -> list[np.ndarray]:
    """All boundary rings of a boolean image, as ``(x, y)`` corner polygons without collinear vertices."""
    pad = np.pad(np.asarray(mask, bool), 1)
    width = pad.shape[1] + 1
    rows, cols = np.nonzero(pad)
    starts, dirs = [], []
    # (neighbour offset that must be outside, edge start corner offset (row, col), direction)
    for (dr, dc), (sr, sc), d in (((-1, 0), (0, 0), 0), ((0, 1), (0, 1), 1), ((1, 0), (1, 1), 2), ((0, -1), (1, 0), 3)):
        free = ~pad[rows + dr, cols + dc]
        starts.append((rows[free] + sr) * width + cols[free] + sc)
        dirs.append(np.full(int(free.sum()), d))
    start = np.concatenate(starts)
    direction = np.concatenate(dirs)
    if start.size == 0:
        return []
    end = start + _STEP[direction, 1] * width + _STEP[direction, 0]
    order = np.lexsort((direction, start))
    start, direction, end = start[order], direction[order], end[order]
    first = np.searchsorted(start, end, "left")
    n_out = np.searchsorted(start, end, "right") - first
    wanted = (direction + 1) % 4  # at a saddle, turn right: hug the current pixel
    second = np.minimum(first + 1, len(start) - 1)
    nxt = np.where((n_out == 2) & (direction[first] != wanted), second, first)
    seen = np.zeros(len(start), bool)
    rings = []
    for e0 in range(len(start)):
        if seen[e0]:
            continue
        chain = []
        e = e0
        while not seen[e]:
            seen[e] = True
            chain.append(e)
            e = nxt[e]
        chain = np.asarray(chain)
        corner = np.flatnonzero(direction[chain] != np.roll(direction[chain], 1))
        v = start[chain[corner]]
        rings.append(np.column_stack([v % width - 1, v // width - 1]).astype(float))
    return rings


def outline(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> Outline:
    """The polygons of a boolean image (one object), shifted by ``offset = (y0, x0)``.

    Holes go to the outer ring that contains them; polygons are sorted by area, largest first.
    """
    rings = trace_rings(mask)
    shift = np.array([offset[1], offset[0]], float)
    outers = [r for r in rings if signed_area(r) > 0]
    holes = [r for r in rings if signed_area(r) < 0]
    outers.sort(key=signed_area, reverse=True)
    polys: list[tuple[np.ndarray, list[np.ndarray]]] = [(r, []) for r in outers]
    for hole in holes:
        probe = _inside_point(hole)
        owner = 0
        if len(polys) > 1:
            inside = [i for i, (r, _) in enumerate(polys) if points_in_poly(probe[None], r)[0]]
            owner = min(inside, key=lambda i: signed_area(polys[i][0])) if inside else 0
        polys[owner][1].append(hole)
    return Outline([(r + shift, [h + shift for h in hs]) for r, hs in polys])


def _inside_point(hole: np.ndarray) -> np.ndarray:
    """The centre of the background pixel on the inner side of a hole ring's first edge."""
    a, b = hole[0], hole[1]
    step = (b - a) / np.linalg.norm(b - a)
    left = np.array([step[1], -step[0]])  # the hole's inside is on the left of its edges in image coordinates
    return a + step * 0.5 + left * 0.5


def label_outlines(labels: np.ndarray) -> dict[int, Outline]:
    """Outlines of every object of a label image, by mask id (each traced in its bounding box)."""
    out = {}
    for obj, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        out[obj] = outline(labels[box] == obj, (box[0].start, box[1].start))
    return out
