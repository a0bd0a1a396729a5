"""The outlines written to ``_seg.npy`` are skimage's inner boundaries, and a copied label set keeps its boxes."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from mcp_core.labels import LabelSet
from mcp_core.labels.files import inner_outlines


def test_inner_outlines_equal_find_boundaries():
    rng = np.random.default_rng(0)
    for k in range(60):  # thin images too (one row or column)
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        masks = rng.integers(0, 4, shape).astype(np.uint16 if k % 2 else np.uint32)
        masks[rng.random(shape) < 0.5] = 0
        want = np.where(find_boundaries(masks, mode="inner"), masks, 0).astype(masks.dtype)
        got = inner_outlines(masks)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_copy_keeps_exact_boxes():
    masks = np.zeros((50, 60), np.uint16)
    masks[5:9, 10:20] = 1
    masks[30:40, 2:4] = 3
    ls = LabelSet(masks)
    ls.index_boxes()
    copied = ls.copy()
    copied.delete([1])
    assert ls.box_of([1]) == (slice(5, 9), slice(10, 20)) and copied.box_of([1]) is None
    assert copied.ids.tolist() == [3] and ls.ids.tolist() == [1, 3]
