"""Polygon fill by scanlines: the pixels :func:`skimage.draw.polygon` gives, in time in proportion to the rows.

``skimage.draw.polygon`` tests every pixel of the polygon's box against every edge (a 200-pixel
contour of 40 points: about 15 ms). Here each row's edge crossings are found once and the pixels
between pairs of crossings filled. The few pixels where skimage's own test could decide otherwise
(rows through a vertex, pixels within :data:`NEAR` of a crossing: on or next to an edge) are decided
by that test itself (:func:`in_polygon`), so the result is the same pixel for pixel.
"""

from __future__ import annotations

import numpy as np

#: Pixels this close to an edge's crossing of their row are decided by :func:`in_polygon` (far above the rounding
#: of either computation: about 1e-12 for coordinates up to 1e4).
NEAR = 1e-6
#: skimage's distance under which a pixel is a polygon's vertex.
VERTEX_EPS = 1e-12


def in_polygon(x: np.ndarray, y: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """Whether points ``(x, y)`` are inside, on an edge or on a vertex of the polygon ``(xp, yp)``.

    The test of ``skimage.draw.polygon`` (O'Rourke's crossing counts to the right and to the left),
    with the same arithmetic, vectorised over the points.
    """
    x0, y0 = xp[None, :] - x[:, None], yp[None, :] - y[:, None]  # each vertex i seen from each point
    x1, y1 = np.roll(x0, 1, axis=1), np.roll(y0, 1, axis=1)  # ... and the vertex before it
    vertex = ((np.abs(x0) < VERTEX_EPS) & (np.abs(y0) < VERTEX_EPS)).any(axis=1)
    right, left = (y0 > 0) != (y1 > 0), (y0 < 0) != (y1 < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = (x0 * y1 - x1 * y0) / (y1 - y0)
    r_odd = (right & (at > 0)).sum(axis=1) % 2 == 1
    l_odd = (left & (at < 0)).sum(axis=1) % 2 == 1
    return vertex | r_odd | l_odd


def polygon_box(rows, cols, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The pixels inside a polygon, clipped to an image of *shape*, as its box and a boolean mask of that box.

    Parameters
    ----------
    rows, cols
        The vertices' coordinates (the polygon closes from the last vertex back to the first).
    shape
        ``(Y, X)`` of the image.

    Returns
    -------
    tuple or None
        ``((row slice, column slice), inside)``, or ``None`` when the box is empty (the polygon is outside).
    """
    yp, xp = np.asarray(rows, np.float64).ravel(), np.asarray(cols, np.float64).ravel()
    y0, y1 = max(int(np.floor(yp.min())), 0), min(int(np.ceil(yp.max())), shape[0] - 1) + 1
    x0, x1 = max(int(np.floor(xp.min())), 0), min(int(np.ceil(xp.max())), shape[1] - 1) + 1
    if y1 <= y0 or x1 <= x0:
        return None
    ys = np.arange(y0, y1, dtype=np.float64)
    vertex_row = np.isin(ys, yp)
    # Rows through no vertex: every edge is above or below the row at each end, and crosses it or not.
    yj, xj = np.roll(yp, 1), np.roll(xp, 1)  # edge i is from vertex i - 1 to vertex i
    row, edge = np.nonzero(((yp > ys[:, None]) != (yj > ys[:, None])) & ~vertex_row[:, None])
    at = xp[edge] + (xj[edge] - xp[edge]) * (ys[row] - yp[edge]) / (yj[edge] - yp[edge])
    order = np.lexsort((at, row))  # by row, then along it: each row has an even number of crossings
    row, at = row[order], at[order]
    # Inside where an odd number of crossings lie at or left of the pixel: from ceil(1st) up to ceil(2nd), ...
    start = np.clip(np.ceil(at[0::2]), x0, x1).astype(np.int64) - x0
    stop = np.clip(np.ceil(at[1::2]), x0, x1).astype(np.int64) - x0
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    for r, a, b in zip(row[0::2].tolist(), start.tolist(), stop.tolist()):  # a span a row: few (a cumsum: slow)
        inside[r, a:b] = True
    # Pixels on or next to an edge, and rows through a vertex, as skimage decides them.
    near = np.abs(at - np.round(at)) < NEAR
    px, py = np.round(at[near]).astype(np.int64), row[near]
    keep = (px >= x0) & (px < x1)
    px, py = px[keep], py[keep]
    vr = np.flatnonzero(vertex_row)
    px = np.concatenate([px, np.tile(np.arange(x0, x1), len(vr))])
    py = np.concatenate([py, np.repeat(vr, x1 - x0)])
    if px.size:
        inside[py, px - x0] = in_polygon(px.astype(np.float64), ys[py], xp, yp)
    return (slice(y0, y1), slice(x0, x1)), inside
