"""LabelSet edits with undo/redo, label files, upstream cellpose compatibility, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from mcp_core.errors import LabelFileError, MCPError, ParameterError
from mcp_core.filenames import label_path
from mcp_core.labels import LabelSet, load_labels, load_labels_for, majority_class, save_labels

SQUARE = [(10, 10), (29, 10), (29, 29), (10, 29)]


def two_squares() -> LabelSet:
    ls = LabelSet(np.zeros((64, 64), np.uint16), class_names=["unassigned", "A", "B"])
    ls.add_polygon(SQUARE, 1)
    ls.add_polygon([(25, 25), (44, 25), (44, 44), (25, 44)], 2)
    return ls


# ------------------------------------------------------------------------------ edits
def test_add_polygon_takes_only_free_pixels():
    ls = two_squares()
    assert ls.ids.tolist() == [1, 2]
    assert (ls.masks == 1).sum() == 20 * 20
    assert (ls.masks == 2).sum() == 20 * 20 - 5 * 5  # overlap stays with mask 1
    assert ls.classes.tolist() == [0, 1, 2]
    assert ls.add_polygon(SQUARE, 1) == 0  # nothing free: no mask, no edit


def test_polygon_validation():
    ls = two_squares()
    with pytest.raises(ParameterError, match="three"):
        ls.add_polygon([(0, 0), (1, 1)])
    with pytest.raises(ParameterError, match="no class 7"):
        ls.add_polygon([(50, 50), (60, 50), (60, 60)], 7)


def test_delete_assign_merge():
    ls = two_squares()
    ls.assign_class([1, 2], 2)
    assert ls.classes.tolist() == [0, 2, 2]
    assert ls.merge([2, 1]) == 1 and ls.ids.tolist() == [1]
    assert (ls.masks == 1).sum() == 400 + 375
    assert ls.delete([1]) == 775 and ls.count == 0


def test_split_by_a_line():
    ls = LabelSet(np.zeros((40, 40), np.uint16))
    ls.add_polygon([(5, 5), (34, 5), (34, 14), (5, 14)], 0)  # 30 x 10 bar
    ids = ls.split(1, [(20, 0), (20, 39)])
    assert ids == [1, 2]
    a, b = (ls.masks == 1).sum(), (ls.masks == 2).sum()
    assert a + b == 300 and min(a, b) >= 140
    left, right = ls.masks[10, :20], ls.masks[10, 21:35]
    assert len(set(left[left > 0])) == 1 and len(set(right[right > 0])) == 1
    assert ls.split(1, [(0, 30), (1, 30)]) == [1]  # a line that misses does nothing


def test_erase_brush():
    ls = two_squares()
    cleared = ls.erase([(15, 15), (20, 15)], radius=2)
    assert cleared > 0 and ls.masks[15, 17] == 0 and ls.masks[25, 15] == 1


def test_erase_across_a_mask_gives_the_smaller_piece_a_new_id():
    ls = LabelSet(np.zeros((40, 40), np.uint16), class_names=["unassigned", "A", "B"])
    ls.add_polygon([(5, 5), (34, 5), (34, 14), (5, 14)], 2)  # bar: x 5..34, y 5..14 (300 pixels)
    ls.erase([(12, 0), (12, 20)], radius=1.5)  # clears columns 11, 12, 13: 3 x 10 pixels
    assert (ls.masks == 1).sum() == 21 * 10  # x 14..34 is the larger piece: it keeps id 1
    assert (ls.masks == 2).sum() == 6 * 10 and (ls.masks[5:15, 5:11] == 2).all()  # x 5..10: a new mask
    assert ls.classes.tolist() == [0, 2, 2]  # of the same class
    assert ls.last_edit_box == (slice(5, 15), slice(5, 35))  # one edit over the whole bar
    ls.undo()  # one step back restores the bar as one mask
    assert (ls.masks == 1).sum() == 300 and ls.classes.tolist() == [0, 2]


def test_erase_that_leaves_a_mask_whole_or_already_in_pieces_makes_no_new_id():
    ls = LabelSet(np.zeros((40, 40), np.uint16), class_names=["unassigned", "A"])
    ls.add_polygon([(5, 5), (34, 5), (34, 14), (5, 14)], 1)
    ls.erase([(12, 5)], radius=1.5)  # a nick in the top edge: rows 5, 6 x columns 11..13
    assert ls.ids.tolist() == [1] and (ls.masks == 1).sum() == 300 - 2 * 3
    block = np.ones((4, 4), np.uint16)
    two = LabelSet(np.pad(block, ((0, 0), (0, 8))) | np.pad(block, ((0, 0), (8, 0))))  # mask 1 in two pieces
    two.erase([(14, 1)], radius=1)  # mask 1 came in two pieces; erasing in one of them splits nothing new
    assert two.ids.tolist() == [1] and two.max_id == 1


def test_renumber_keeps_classes():
    ls = two_squares()
    ls.add_polygon([(50, 50), (60, 50), (60, 60), (50, 60)], 1)
    ls.delete([2])
    assert ls.renumber() == {1: 1, 3: 2}
    assert ls.ids.tolist() == [1, 2] and ls.classes.tolist() == [0, 1, 1]


def test_remove_class_makes_masks_unassigned():
    ls = two_squares()
    colors = list(ls.class_colors)
    ls.remove_class(1)
    assert ls.class_names == ["unassigned", "B"] and ls.classes.tolist() == [0, 0, 1]
    ls.undo()  # the class is back in the list, in its place, and its mask in it
    assert ls.classes.tolist() == [0, 1, 2]
    assert ls.class_names == ["unassigned", "A", "B"] and ls.class_colors == colors
    ls.redo()
    assert ls.class_names == ["unassigned", "B"] and ls.class_colors == [colors[0], colors[2]]
    assert ls.classes.tolist() == [0, 0, 1]


def test_undo_redo_every_edit_restores_exact_state():
    ls = LabelSet(np.zeros((80, 80), np.uint16), class_names=["u", "A", "B"])
    states = [(ls.masks.copy(), ls.classes.copy())]
    edits = [
        lambda: ls.add_polygon(SQUARE, 1),
        lambda: ls.add_polygon([(20, 20), (50, 20), (50, 50), (20, 50)], 2),
        lambda: ls.assign_class([2], 1),
        lambda: ls.split(2, [(40, 0), (40, 79)]),
        lambda: ls.merge([2, 3]),
        lambda: ls.erase([(15, 15)], 3),
        lambda: ls.delete([1]),
        lambda: ls.replace(np.pad(np.ones((10, 10), np.uint16), ((0, 70), (0, 70))), np.array([0, 2]), keep_existing=True),
        lambda: ls.renumber(),
    ]
    for edit in edits:
        edit()
        states.append((ls.masks.copy(), ls.classes.copy()))
    for masks, classes in reversed(states[:-1]):
        assert ls.undo() is not None
        np.testing.assert_array_equal(ls.masks, masks)
        np.testing.assert_array_equal(ls.classes, classes)
    assert ls.undo() is None
    for masks, classes in states[1:]:
        ls.redo()
        np.testing.assert_array_equal(ls.masks, masks)
        np.testing.assert_array_equal(ls.classes, classes)


def test_undo_is_bounded_and_stores_deltas_not_arrays():
    ls = LabelSet(np.zeros((2048, 2048), np.uint16), max_undo=5)
    for i in range(8):
        ls.add_polygon([(10 + 20 * i, 10), (25 + 20 * i, 10), (25 + 20 * i, 25)], 0)
    assert sum(1 for _ in iter(ls.undo, None)) == 5
    ls.redo()
    # Five small triangles: the history is a few KB, the masks 8 MB.
    assert ls.history_nbytes < 20_000 < ls.masks.nbytes


def test_masks_become_uint32_past_65535_objects():
    masks = np.arange(70_000, dtype=np.uint32).reshape(280, 250)
    ls = LabelSet(masks)
    assert ls.masks.dtype == np.uint32 and ls.max_id == 69_999
    small = LabelSet(np.zeros((300, 300), np.uint16))
    small.classes = np.zeros(65_535 + 1, np.uint16)  # ids used up to the uint16 limit
    new = small.add_polygon([(0, 0), (5, 0), (5, 5)])
    assert new == 65_536 and small.masks.dtype == np.uint32 and small.masks.max() == 65_536


def test_labelset_rejects_bad_arrays():
    with pytest.raises(LabelFileError, match="2-D"):
        LabelSet(np.zeros((2, 3, 4), np.uint16))
    with pytest.raises(LabelFileError, match="integer"):
        LabelSet(np.zeros((3, 4), float))


def test_majority_class_is_vectorised_vote():
    masks = np.array([[1, 1, 1, 2], [1, 0, 2, 2], [3, 3, 0, 0]])
    cmap = np.array([[1, 2, 2, 1], [2, 1, 1, 1], [0, 0, 2, 2]])
    assert majority_class(masks, cmap).tolist() == [0, 2, 1, 0]


# ------------------------------------------------------------------------------- files
def test_save_load_round_trip_with_classes(tmp_path):
    ls = two_squares()
    ls.add_class("C", "#123456")
    ls.diameter = 17.0
    image = tmp_path / "cells.tif"
    path = save_labels(label_path(image), ls, image_path=image)
    assert path.name == "cells_seg.npy"
    back = load_labels(path)
    np.testing.assert_array_equal(back.masks, ls.masks)
    np.testing.assert_array_equal(back.classes, ls.classes)
    assert back.class_names == ["unassigned", "A", "B", "C"] and back.class_colors[3] == "#123456"
    assert back.diameter == 17.0
    assert load_labels_for(image).count == 2
    assert load_labels_for(image, kind="pred") is None


def test_frame_and_prediction_names(tmp_path):
    img = tmp_path / "movie.ome.tif"
    assert label_path(img, "S0_T1").name == "movie__S0_T1_seg.npy"
    assert label_path(img, kind="pred").name == "movie_pred.npy"
    save_labels(label_path(img, "S0_T1"), two_squares(), image_path=img)
    assert load_labels_for(img, "S0_T1").count == 2 and load_labels_for(img) is None


def test_file_carries_every_key_the_upstream_gui_reads(tmp_path):
    image = tmp_path / "cells.tif"
    save_labels(tmp_path / "cells_seg.npy", two_squares(), image_path=image)
    dat = np.load(tmp_path / "cells_seg.npy", allow_pickle=True).item()
    upstream_gui_keys = {"outlines", "colors", "masks", "filename", "flows", "ismanual", "manual_changes",
                         "model_path", "flow_threshold", "cellprob_threshold", "normalize_params", "restore",
                         "ratio", "diameter", "chan_choose"}
    assert upstream_gui_keys <= set(dat)
    assert {"classes", "classes_map", "class_names", "class_colors"} <= set(dat)
    assert dat["filename"] == str(image.resolve())
    assert len(dat["colors"]) == dat["masks"].max() == len(dat["ismanual"])
    # outlines are the inner boundary pixels of each mask, labelled by mask id
    assert set(np.unique(dat["outlines"])) == {0, 1, 2} and dat["outlines"][20, 20] == 0


def test_upstream_reads_our_file(tmp_path):
    """Upstream cellpose's training loader reads masks from our _seg.npy."""
    from cellpose import io as cpio

    ls = two_squares()
    image = tmp_path / "cells.tif"
    import tifffile

    tifffile.imwrite(image, np.zeros((64, 64), np.uint8))
    save_labels(tmp_path / "cells_seg.npy", ls, image_path=image)
    images, labels, names = cpio.load_images_labels(str(tmp_path), mask_filter="_seg.npy")[:3]
    assert len(labels) == 1
    np.testing.assert_array_equal(np.asarray(labels[0]).squeeze(), ls.masks)


def test_we_read_upstream_files_as_unclassified(tmp_path, sample):
    from cellpose import io as cpio

    image, truth = sample
    flows = [np.zeros((*truth.shape, 3), np.uint8), np.zeros((2, *truth.shape), np.float32),
             np.zeros(truth.shape, np.float32)]
    cpio.masks_flows_to_seg([image[..., 0]], [truth.masks], [flows], [str(tmp_path / "up.tif")])
    back = load_labels(tmp_path / "up_seg.npy")
    np.testing.assert_array_equal(back.masks, truth.masks)
    assert back.classes.max() == 0 and back.count == truth.count


def test_masks_classes_tiff_pair(tmp_path):
    import tifffile

    masks = np.array([[1, 1, 0], [2, 2, 2], [0, 3, 3]], np.uint16)
    cmap = np.array([[2, 2, 0], [1, 1, 2], [0, 0, 0]], np.uint8)
    tifffile.imwrite(tmp_path / "a_masks.tif", masks)
    tifffile.imwrite(tmp_path / "a_classes.tif", cmap)
    ls = load_labels_for(tmp_path / "a.tif")
    np.testing.assert_array_equal(ls.masks, masks)
    assert ls.classes.tolist() == [0, 2, 1, 0]


@pytest.mark.parametrize("content,message", [(b"garbage", "not an .npy file"), (None, "does not exist")])
def test_bad_label_files(tmp_path, content, message):
    path = tmp_path / "x_seg.npy"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LabelFileError, match=message):
        load_labels(path)


def test_label_file_without_masks(tmp_path):
    np.save(tmp_path / "x_seg.npy", {"outlines": np.zeros((3, 3))}, allow_pickle=True)
    with pytest.raises(LabelFileError, match="no 'masks'"):
        load_labels(tmp_path / "x_seg.npy")


# ------------------------------------------------------------------------------ atomic
def test_full_disk_keeps_old_file(tmp_path, monkeypatch):
    import errno

    from mcp_core import atomic

    path = tmp_path / "a_seg.npy"
    save_labels(path, two_squares())
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(MCPError, match="disk is full.*previous version is intact"):
        save_labels(path, LabelSet(np.zeros((64, 64), np.uint16)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name != ".mcp_history"] == ["a_seg.npy"]


KILLED_WRITER = """
import os, sys, time
import numpy as np
from mcp_core import atomic
from mcp_core.labels import LabelSet, save_labels
rng = np.random.default_rng(0)
ls = LabelSet(rng.integers(0, 5000, size=(2048, 2048)).astype(np.uint16))
def slow_fsync(fd):
    print("WRITING", flush=True)
    time.sleep(60)
atomic.os.fsync = slow_fsync
save_labels(sys.argv[1], ls)
"""


def test_writer_killed_mid_write_leaves_old_file_intact(tmp_path):
    path = tmp_path / "a_seg.npy"
    old = two_squares()
    save_labels(path, old)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "WRITING"  # the new content is written, not yet in place
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    back = load_labels(path)
    np.testing.assert_array_equal(back.masks, old.masks)
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(p.name.startswith(".") for p in leftovers)  # hidden temp file, ignored by list_images
    from mcp_core.io import list_images

    assert list_images(tmp_path) == []
