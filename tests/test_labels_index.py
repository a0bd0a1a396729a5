"""LabelSet's per-mask boxes: kept exact by every edit, and edits read only their masks' boxes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mcp_core.labels import LabelSet


def grid(side: int, step: int = 32, radius: int = 10) -> LabelSet:
    """Discs of *radius* every *step* pixels, classes alternating 1 and 2."""
    masks = np.zeros((side, side), np.uint16)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = yy ** 2 + xx ** 2 <= radius ** 2
    k = 0
    for y in range(step // 2, side - radius, step):
        for x in range(step // 2, side - radius, step):
            k += 1
            masks[y - radius:y + radius + 1, x - radius:x + radius + 1][disc] = k
    return LabelSet(masks, np.arange(k + 1) % 2 + 1, ["u", "A", "B"])


def assert_index_exact(ls: LabelSet) -> None:
    areas = np.bincount(ls.masks.ravel(), minlength=ls.max_id + 1)
    np.testing.assert_array_equal(ls.areas(), areas)
    np.testing.assert_array_equal(ls.ids, np.flatnonzero(areas[1:]) + 1)
    some = np.r_[0, ls.max_id + 5, np.arange(1, ls.max_id + 1, 7)]  # with a non-id and an absent id
    np.testing.assert_array_equal(ls.areas(some), np.r_[0, 0, areas[1::7]])
    for i, sl in enumerate(ndimage.find_objects(ls.masks, max_label=ls.max_id), start=1):
        assert ls.box_of([i]) == (None if sl is None else sl), i


def test_every_edit_undo_and_redo_keeps_boxes_exact():
    ls = grid(256)
    ls.index_boxes()  # before the edits
    edits = [
        lambda: ls.add_polygon([(0, 0), (60, 0), (60, 60), (0, 60)], 1),  # fills around existing discs
        lambda: ls.delete([5, 9]),
        lambda: ls.merge([20, 21, 40]),
        lambda: ls.split(20, [(112, 0), (112, 255)]),
        lambda: ls.erase([(80, 80), (100, 84)], 4),
        lambda: ls.assign_class([3], 2),
        lambda: ls.delete(ls.ids[:30]),
        lambda: ls.replace(np.pad(np.ones((10, 10), np.uint16), ((0, 246), (0, 246))), np.array([0, 1]),
                           keep_existing=True),
    ]
    for edit in edits:
        edit()
        assert_index_exact(ls)
    while ls.undo() is not None:
        assert_index_exact(ls)
    while ls.redo() is not None:
        assert_index_exact(ls)
    ls.replace(np.zeros((256, 256), np.uint16))  # a whole-image edit rebuilds the index
    assert_index_exact(ls)
    assert ls.count == 0 and ls.box_of([1]) is None


class RecordingMasks:
    """A stand-in for ``LabelSet.masks`` recording the box of every region read or written."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.regions: list[tuple[int, int, int, int]] = []

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    size = property(lambda self: self.array.size)
    ndim = property(lambda self: self.array.ndim)

    def _record(self, key) -> None:
        if isinstance(key, tuple) and all(isinstance(k, slice) for k in key):
            rows, cols = (range(*k.indices(n)) for k, n in zip(key, self.shape))
            self.regions.append((rows.start, rows.stop, cols.start, cols.stop))
        elif isinstance(key, tuple) and len(key) == 2:  # (rows, cols) index arrays
            r, c = np.asarray(key[0]), np.asarray(key[1])
            if r.size:
                self.regions.append((int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1))
        else:
            self.regions.append((0, self.shape[0], 0, self.shape[1]))

    def __getitem__(self, key):
        self._record(key)
        return self.array[key]

    def __setitem__(self, key, value) -> None:
        self._record(key)
        self.array[key] = value

    def __array__(self, dtype=None, copy=None):  # any whole-array use (np.asarray, lut[masks], ravel, ...)
        self.regions.append((0, self.shape[0], 0, self.shape[1]))
        return self.array if dtype is None else self.array.astype(dtype)

    def __getattr__(self, name):  # .ravel(), .max(), ... read everything
        self.regions.append((0, self.shape[0], 0, self.shape[1]))
        return getattr(self.array, name)


def box_around(ls: LabelSet, ids, pad: int = 0) -> tuple[int, int, int, int]:
    rr, cc = np.nonzero(np.isin(ls.masks, ids))
    return rr.min() - pad, rr.max() + 1 + pad, cc.min() - pad, cc.max() + 1 + pad


EDITS = {
    "delete": (lambda ls, i: ls.delete([i]), 0),
    "merge": (lambda ls, i: ls.merge([i, i + 1]), 0),
    "assign": (lambda ls, i: ls.assign_class([i], 2), 0),
    "split": (lambda ls, i: ls.split(i, [(ls.box_of([i])[1].start + 10, 0), (ls.box_of([i])[1].start + 10, 4095)]), 1),
    "erase": (lambda ls, i: ls.erase([(ls.box_of([i])[1].start + 10, ls.box_of([i])[0].start + 10)], 3), 5),
    "contour": (lambda ls, i: ls.add_polygon([(ls.box_of([i])[1].start - 3, ls.box_of([i])[0].start - 3),
                                              (ls.box_of([i])[1].start + 25, ls.box_of([i])[0].start - 3),
                                              (ls.box_of([i])[1].start + 25, ls.box_of([i])[0].start + 25)], 1), 5),
}


@pytest.mark.parametrize("name", EDITS)
def test_edit_on_a_large_image_reads_only_its_box(name):
    ls = grid(4096)
    ls.index_boxes()  # once, when the labels are opened
    edit, pad = EDITS[name]
    mask_id = int(ls.masks[2064, 2064])  # a disc in the middle
    ids = [mask_id, mask_id + 1] if name == "merge" else [mask_id]
    y0, y1, x0, x1 = box_around(ls, ids, pad)
    before = ls.masks.copy()
    recorder = RecordingMasks(ls.masks)
    ls.masks = recorder
    edit(ls, mask_id)
    assert bool(recorder.regions) == (name != "assign")  # a class change reads no pixel
    ls.undo()
    ls.masks = recorder.array
    for ry0, ry1, rx0, rx1 in recorder.regions:
        assert y0 <= ry0 and ry1 <= y1 and x0 <= rx0 and rx1 <= x1, (name, (ry0, ry1, rx0, rx1), (y0, y1, x0, x1))
    np.testing.assert_array_equal(ls.masks, before)
