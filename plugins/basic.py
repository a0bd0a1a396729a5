"""Basic stats: size, shape, position and per-channel intensity of every object.

Everything is computed for all objects at once from per-pixel label arrays (``bincount``
and one sort per channel); the convex hulls (for solidity) too, from each object's row ends.

Definitions
-----------
- ``area``: pixels. ``centroid_y/x``: mean pixel row/column. ``bbox_*``: first row/column
  and one past the last (as ``skimage.measure.regionprops``).
- ``perimeter``: length of the boundary as ``regionprops`` measures it (4-connected border
  pixels weighted by their border neighbours: 1 for straight runs, √2 for diagonal steps;
  like regionprops, one-pixel-wide parts count little: a 1x3 bar measures 1).
- ``major/minor_axis_length``: 4·√(eigenvalues of the pixel-coordinate covariance);
  ``eccentricity``: √(1 − minor²/major²).
- ``solidity``: area / area of the convex hull of the object's pixel squares (≤ 1).
- ``circularity``: 4π·area / perimeter² (1 for a disc, ``nan`` when the perimeter is 0).
- ``mean/median/integrated_c{c}``: of the object's pixels in channel ``c``.
- ``background_c{c}``: a percentile of the pixels in the annulus ``gap < d ≤ gap + width``
  around the object (``d`` = distance to its nearest pixel), taking only background pixels,
  each given to the object it is nearest to; ``mean_bgsub_c{c}`` = mean − background.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.measure import FrameData, Plugin, grouped, hookimpl, regions

# Border-pixel codes (1 + 2·straight + 10·diagonal border neighbours) and the boundary length each adds.
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0
_STRAIGHT = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))


class BasicParams(BaseModel):
    """Parameters of the basic stats."""

    model_config = ConfigDict(extra="forbid")
    annulus_gap: int = Field(2, ge=0, le=100, title="Annulus gap",
                             description="Pixels skipped between an object and its background annulus.")
    annulus_width: int = Field(5, ge=1, le=200, title="Annulus width",
                               description="Width in pixels of the background annulus (outer radius = gap + width).")
    background_percentile: float = Field(50.0, ge=0, le=100, title="Background percentile",
                                         description="Percentile of the annulus pixels used as local background "
                                                     "(50 = median; lower is more robust to neighbours' glow).")


COLUMNS = {
    "area": "Object area in pixels.",
    "perimeter": "Boundary length in pixels (regionprops' definition).",
    "centroid_y": "Mean row of the object's pixels.",
    "centroid_x": "Mean column of the object's pixels.",
    "bbox_y0": "First row of the bounding box.",
    "bbox_x0": "First column of the bounding box.",
    "bbox_y1": "One past the last row of the bounding box.",
    "bbox_x1": "One past the last column of the bounding box.",
    "major_axis_length": "Major axis of the ellipse with the same second moments, in pixels.",
    "minor_axis_length": "Minor axis of the ellipse with the same second moments, in pixels.",
    "eccentricity": "Eccentricity of that ellipse (0 = circle, towards 1 = elongated).",
    "solidity": "Area divided by the area of the convex hull of the object's pixels.",
    "circularity": "4π·area / perimeter² (1 for a disc).",
    "mean_c{c}": "Mean intensity in channel c.",
    "median_c{c}": "Median intensity in channel c.",
    "integrated_c{c}": "Sum of intensities in channel c.",
    "background_c{c}": "Local background in channel c: a percentile of the surrounding annulus.",
    "mean_bgsub_c{c}": "Mean intensity minus local background in channel c.",
}


def compute(data: FrameData, params: BasicParams) -> dict[str, np.ndarray]:
    """Basic stats of every object of one frame (rows in the order of ``data.ids``)."""
    labels, ids = data.labels, data.ids
    n = int(labels.max(initial=0)) + 1
    g, flat = regions.foreground(labels)
    yy, xx = np.divmod(flat, labels.shape[1])
    area = grouped.counts(g, n)
    safe = np.maximum(area, 1)
    cy = grouped.sums(g, yy, n) / safe
    cx = grouped.sums(g, xx, n) / safe
    dy, dx = yy - cy[g], xx - cx[g]
    myy, mxx, mxy = (grouped.sums(g, a * b, n) / safe for a, b in ((dy, dy), (dx, dx), (dy, dx)))
    half_trace = (myy + mxx) / 2
    spread = np.sqrt(((myy - mxx) / 2) ** 2 + mxy**2)
    l1, l2 = half_trace + spread, np.maximum(half_trace - spread, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / np.where(l1 > 0, l1, 1), 0, 1)), 0.0)
    perimeter = _perimeter(labels, flat, yy, n)
    rows = _row_extents(g, flat, yy, xx, labels.shape[0])
    bbox = _boxes(*rows, n)[ids]
    with np.errstate(invalid="ignore", divide="ignore"):
        circularity = np.where(perimeter > 0, 4 * np.pi * area / np.where(perimeter > 0, perimeter, 1) ** 2, np.nan)
    out = {
        "area": area[ids], "perimeter": perimeter[ids], "centroid_y": cy[ids], "centroid_x": cx[ids],
        "bbox_y0": bbox[:, 0], "bbox_x0": bbox[:, 1], "bbox_y1": bbox[:, 2], "bbox_x1": bbox[:, 3],
        "major_axis_length": 4 * np.sqrt(l1[ids]), "minor_axis_length": 4 * np.sqrt(l2[ids]),
        "eccentricity": ecc[ids], "solidity": area[ids] / _hull_areas(*rows, ids),
        "circularity": circularity[ids],
    }
    ring_g, ring_px = regions.annulus(labels, params.annulus_gap, params.annulus_width)
    for c in range(data.n_channels):
        chan = data.image[..., c].ravel()
        v = chan[flat]
        total = grouped.sums(g, v, n)
        mean = total / safe
        background = grouped.percentiles(ring_g, chan[ring_px], params.background_percentile, n)
        out[f"mean_c{c}"] = mean[ids]
        out[f"median_c{c}"] = grouped.medians(g, v, n)[ids]
        out[f"integrated_c{c}"] = total[ids]
        out[f"background_c{c}"] = background[ids]
        out[f"mean_bgsub_c{c}"] = (mean - background)[ids]
    return out


def _perimeter(labels: np.ndarray, flat: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """Boundary length per label, from the codes of 4-connected border pixels.

    The border (object pixels with a 4-neighbour of another label) comes from whole-image
    comparisons of shifted views; the codes from gathers at the border pixels only.
    """
    pad = np.pad(labels, 1)
    inner = pad[1:-1, 1:-1]
    interior = inner == pad[:-2, 1:-1]
    for neighbour in (pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]):
        interior &= inner == neighbour
    on_border = ~interior.ravel()[flat]
    w = labels.shape[1] + 2
    border_at = flat[on_border] + 2 * row[on_border] + w + 1  # the border pixels in the padded image
    pad = pad.ravel()
    border_label = pad[border_at]
    is_border = np.zeros(pad.size, bool)
    is_border[border_at] = True
    code = np.ones(len(border_at), np.uint8)
    for weight, offsets in ((2, _STRAIGHT), (10, _DIAGONAL)):
        for dy, dx in offsets:
            nb = border_at + dy * w + dx
            code += np.uint8(weight) * (is_border[nb] & (pad[nb] == border_label))
    return grouped.sums(border_label.astype(np.int64), _PERIMETER_WEIGHTS[code], n)


def _row_extents(g: np.ndarray, flat: np.ndarray, row: np.ndarray, col: np.ndarray,
                 height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each object's rows with their first and last column: ``(label, row, left, right)``, by label, then row."""
    if g.size == 0:
        return (np.zeros(0, np.int64),) * 4
    # Runs of one label along a row (pixels come in row-major order): far fewer than pixels, so only they are sorted.
    cut = np.flatnonzero((g[1:] != g[:-1]) | (flat[1:] != flat[:-1] + 1) | (row[1:] != row[:-1])) + 1
    run_first, run_last = np.r_[0, cut], np.r_[cut - 1, len(g) - 1]
    run_key = g[run_first] * height + row[run_first]
    order = np.argsort(run_key, kind="stable")
    run_key = run_key[order]
    first = np.flatnonzero(np.r_[True, run_key[1:] != run_key[:-1]])
    row_lab, row_y = np.divmod(run_key[first], height)
    row_left = np.minimum.reduceat(col[run_first][order], first)
    row_right = np.maximum.reduceat(col[run_last][order], first)
    return row_lab, row_y, row_left, row_right


def _boxes(row_lab: np.ndarray, row_y: np.ndarray, row_left: np.ndarray, row_right: np.ndarray,
           n: int) -> np.ndarray:
    """Bounding box ``(y0, x0, y1, x1)`` per label ``0..n-1`` from its row extents (zeros where absent)."""
    start, end = np.flatnonzero(np.diff(row_lab, prepend=-1)), np.flatnonzero(np.diff(row_lab, append=-1))
    box = np.zeros((n, 4), np.int64)
    label = row_lab[start]
    box[label, 0] = row_y[start]
    box[label, 1] = np.minimum.reduceat(row_left, start)
    box[label, 2] = row_y[end] + 1
    box[label, 3] = np.maximum.reduceat(row_right, start) + 1
    return box


def _hull_areas(row_lab: np.ndarray, row_y: np.ndarray, row_left: np.ndarray, row_right: np.ndarray,
                ids: np.ndarray) -> np.ndarray:
    """Convex-hull area of each object's pixel squares, for all objects at once, from its row extents.

    The hull of an object's pixel squares is bounded on the left by the convex minorant of its
    rows' left ends and on the right by the concave majorant of their right ends (corners at
    the rows' top and bottom edges); its area is the integral between the two chains.
    """
    if ids.size == 0:
        return np.zeros(0)
    edge_label = np.repeat(row_lab, 2)  # each row's corners lie on its top and bottom edges
    edge = np.column_stack([row_y, row_y + 1]).ravel()
    start = np.flatnonzero(np.r_[True, (edge_label[1:] != edge_label[:-1]) | (edge[1:] != edge[:-1])])
    label, y = edge_label[start], edge[start].astype(float)  # rows sharing an edge: one point
    left = np.minimum.reduceat(np.repeat(row_left - 0.5, 2), start)
    right = np.maximum.reduceat(np.repeat(row_right + 0.5, 2), start)
    n = int(ids.max()) + 1
    return -(_minorant_integrals(label, y, -right, n) + _minorant_integrals(label, y, left, n))[ids]


def _minorant_integrals(label: np.ndarray, y: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Per label, the integral over ``y`` of the convex minorant of the points ``(y, x)``.

    Points are sorted by label, then by strictly rising ``y``. Each pass drops, for every label
    at once, the points on or above the chord of their neighbours (never hull vertices) until
    the chains are convex.
    """
    keep = np.arange(len(x))
    while len(keep) > 2:
        a, b, c = keep[:-2], keep[1:-1], keep[2:]
        above = (x[b] - x[a]) * (y[c] - y[a]) >= (x[c] - x[a]) * (y[b] - y[a])
        drop = np.flatnonzero((label[a] == label[c]) & above)
        if drop.size == 0:
            break
        keep = np.delete(keep, drop + 1)
    a, b = keep[:-1], keep[1:]
    same = label[a] == label[b]
    a, b = a[same], b[same]
    return np.bincount(label[a], weights=(y[b] - y[a]) * (x[a] + x[b]) / 2, minlength=n)


PLUGIN = Plugin(
    name="basic",
    title="Basic stats",
    description="Area, perimeter, centroid, bounding box, shape (eccentricity, solidity, circularity) and, per "
                "channel, mean, median, integrated and local-background-subtracted intensity.",
    params=BasicParams,
    columns=COLUMNS,
    compute=compute,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The basic-stats plugin."""
    return [PLUGIN]
