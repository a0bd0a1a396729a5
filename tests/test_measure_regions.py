"""Pixel sets of ``mcp_core.measure.regions`` against straightforward per-pixel reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_core.measure import regions


def reference_annulus(labels: np.ndarray, gap: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Each background pixel's nearest object pixel by brute force; ties go to the lowest column, then row."""
    ys, xs = np.nonzero(labels)
    by_column = np.lexsort((ys, xs))
    ys, xs = ys[by_column], xs[by_column]
    owners, flats = [], []
    for flat in np.flatnonzero(labels.ravel() == 0) if len(ys) else ():
        y, x = divmod(int(flat), labels.shape[1])
        d2 = (ys - y) ** 2 + (xs - x) ** 2
        nearest = int(np.argmin(d2))  # the first of equally near pixels
        if gap * gap < d2[nearest] <= (gap + width) ** 2:
            owners.append(labels[ys[nearest], xs[nearest]])
            flats.append(flat)
    return np.array(owners, np.int64), np.array(flats, np.int64)


def random_labels(seed: int) -> np.ndarray:
    """A small label image with few objects of scattered pixels: many pixels equally near two objects."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    density = rng.choice([0.005, 0.03, 0.1, 0.5])
    return rng.integers(1, rng.integers(2, 6), (h, w)) * (rng.random((h, w)) < density)


@pytest.mark.parametrize("gap,width", [(0, 1), (2, 5), (1.5, 2.5), (0.7, 0.5), (3, 10), (0, 50)])
@pytest.mark.parametrize("path", ["shifts", "strips", "feature transform"])
def test_annulus_matches_the_brute_force_nearest_pixel(gap, width, path, monkeypatch):
    if path == "strips":  # 37-pixel strips cut the images into many strips of rows
        monkeypatch.setattr(regions, "_STRIP_PIXELS", 37)
    if path == "feature transform":
        monkeypatch.setattr(regions, "_MAX_SHIFT_REACH", 0)
    for seed in range(40):
        labels = random_labels(seed)
        owner, flat = regions.annulus(labels, gap, width)
        want_owner, want_flat = reference_annulus(labels, gap, width)
        np.testing.assert_array_equal(flat, want_flat, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(owner, want_owner, err_msg=f"seed {seed}")


def test_annulus_ties_go_to_the_lowest_column_then_row():
    labels = np.zeros((5, 5), int)
    labels[0, 2], labels[4, 2] = 1, 2  # (2, 2) is 2 from both, in one column: the upper wins
    labels[2, 0], labels[2, 4] = 3, 4  # ... and 2 from these, in lower and higher columns: column 0 wins
    owner, flat = regions.annulus(labels, 1.5, 0.5)
    assert dict(zip(flat.tolist(), owner.tolist()))[12] == 3
    labels[2, 0] = 0
    owner, flat = regions.annulus(labels, 1.5, 0.5)
    assert dict(zip(flat.tolist(), owner.tolist()))[12] == 1
