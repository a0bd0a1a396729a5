"""The scanline polygon fill gives skimage.draw.polygon's pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon

from mcp_core.labels.polygon import polygon_box

SHAPE = (120, 160)


def polygons(seed: int, count: int):
    """Random polygons: float and integer vertices (on pixels: edges through pixel centres), half-pixel vertices,
    star-like outlines, some past the image's edges, self-intersecting ones."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(3, 25))
        kind = k % 4
        if kind == 0:
            yield rng.uniform(-20, 140, n), rng.uniform(-20, 180, n)
        elif kind == 1:
            yield rng.integers(-3, 123, n).astype(float), rng.integers(-3, 163, n).astype(float)
        elif kind == 2:
            yield np.round(rng.uniform(0, 120, n) * 2) / 2, np.round(rng.uniform(0, 160, n) * 2) / 2
        else:
            a = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(2, 70) * rng.uniform(0.6, 1, n)
            yield 60 + r * np.sin(a), 80 + r * np.cos(a)


@pytest.mark.parametrize("seed", range(4))
def test_same_pixels_as_skimage(seed):
    for rows, cols in polygons(seed, 300):
        want = np.zeros(SHAPE, bool)
        want[polygon(rows, cols, shape=SHAPE)] = True
        got = np.zeros(SHAPE, bool)
        found = polygon_box(rows, cols, SHAPE)
        if found is not None:
            got[found[0]] = found[1]
        np.testing.assert_array_equal(got, want, err_msg=f"rows {rows.tolist()} cols {cols.tolist()}")


def test_outside_the_image_is_none():
    assert polygon_box([-10, -5, -8], [3, 9, 12], SHAPE) is None
    assert polygon_box([10, 20, 30], [200, 210, 220], SHAPE) is None
