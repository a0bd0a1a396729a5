"""The editor behind the canvas: edits become patches, autosave writes atomically, classes by name."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mcp_app.editor import Editor
from mcp_app.project import Item, Project
from mcp_core.file_version import FileVersion
from mcp_core.filenames import label_path
from mcp_core.labels import load_labels
from mcp_core.synthetic import write_demo_project


@pytest.fixture
def project(tmp_path):
    write_demo_project(tmp_path, n_images=3, n_labelled=1, shape=(96, 96))
    return Project.open(tmp_path)


def test_project_items_and_classes(project):
    assert [i.name for i in project.items()] == ["demo_01.tif", "demo_02.tif", "demo_03.tif"]
    assert project.class_names == ["unassigned", "round", "elongated"]


def test_polygon_patch_matches_labels_and_saves(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_02.tif"))
    assert ed.labels.count == 0 and not ed.dirty
    patch = ed.add_polygon([(10, 10), (30, 10), (30, 30), (10, 30)], 2)
    assert (patch.x, patch.y, patch.w, patch.h) == (10, 10, 21, 21)
    np.testing.assert_array_equal(patch.ids(), ed.labels.masks[10:31, 10:31])
    assert patch.classes == [0, 2] and ed.dirty
    path = ed.save()
    assert path == label_path(project.folder / "demo_02.tif")
    saved = load_labels(path)
    assert saved.count == 1 and saved.classes.tolist() == [0, 2]
    assert ed.save() is None  # nothing new to write


def test_erase_across_a_mask_sends_both_pieces_and_the_new_class_entry(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_02.tif"))
    ed.add_polygon([(5, 5), (34, 5), (34, 14), (5, 14)], 2)  # bar x 5..34, y 5..14
    patch = ed.erase([(12, 0), (12, 20)], 1.5)  # cuts it at columns 11..13
    assert (patch.x, patch.y, patch.w, patch.h) == (5, 5, 30, 10)  # the whole bar: both pieces are redrawn
    ids = patch.ids()
    assert (ids[:, :6] == 2).all() and (ids[:, 6:9] == 0).all() and (ids[:, 9:] == 1).all()
    assert patch.classes == [0, 2, 2]


def test_delete_assign_lasso_undo(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))
    n = ed.labels.count
    some = int(ed.labels.ids[0])
    box_patch = ed.assign([some], 1)
    assert box_patch.data == "" and box_patch.classes[some] == 1
    ed.delete([some])
    assert ed.labels.count == n - 1
    h, w = ed.labels.shape
    ed.lasso([(0, 0), (w, 0), (w, h), (0, h)])
    assert ed.labels.count == 0
    for _ in range(3):
        ed.undo()
    assert ed.labels.count == n and ed.redo() is not None


def test_label_bytes_are_gzip_16_bit_ids_while_they_fit_else_32_bit(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))
    shape = ed.labels.shape
    raw = gzip.decompress(ed.label_bytes())
    assert len(raw) == 2 * ed.labels.masks.size  # the page tells the widths apart by the length
    np.testing.assert_array_equal(np.frombuffer(raw, "<u2").reshape(shape), ed.labels.masks)
    wide = np.where(ed.labels.masks > 0, ed.labels.masks.astype(np.uint32) + 70_000, 0)
    ed.replace(wide, np.ones(int(wide.max()) + 1, np.uint16), project.class_names, keep_existing=False)
    raw = gzip.decompress(ed.label_bytes())
    assert len(raw) == 4 * ed.labels.masks.size
    np.testing.assert_array_equal(np.frombuffer(raw, "<u4").reshape(shape), wide)


def test_box_bytes_hold_each_masks_box_after_edits_too(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))

    def sent() -> np.ndarray:
        return np.frombuffer(gzip.decompress(ed.box_bytes()), "<u4").reshape(-1, 4)

    def found() -> np.ndarray:
        boxes = np.zeros((len(ed.labels.classes), 4), np.int64)
        for i in ed.labels.ids:
            ys, xs = np.nonzero(ed.labels.masks == i)
            boxes[i] = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return boxes

    np.testing.assert_array_equal(sent(), found())
    ed.delete([int(ed.labels.ids[0])])
    ed.add_polygon([(0, 0), (95, 0), (95, 20), (0, 20)], 1)
    np.testing.assert_array_equal(sent(), found())


def test_pixel_bytes_are_the_raw_channels_planar(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))
    info = ed.pixel_info()
    raw = np.frombuffer(gzip.decompress(ed.pixel_bytes()), np.dtype(info["dtype"]).newbyteorder("<"))
    planar = raw.reshape(info["channels"], info["height"], info["width"])
    np.testing.assert_array_equal(np.moveaxis(planar, 0, -1), ed.image)
    assert info["display"]["low"] == ed.display.low and len(info["display"]["rgb"]) == 3


def test_shape_mismatch_is_reported_and_file_untouched(project):
    bad = label_path(project.folder / "demo_02.tif")
    from mcp_core.labels import LabelSet, save_labels

    save_labels(bad, LabelSet(np.ones((10, 10), np.uint16)))
    before = bad.read_bytes()
    with pytest.raises(ValueError, match="shape"):
        Editor(project).open(Item(project.folder / "demo_02.tif"))
    assert bad.read_bytes() == before


def test_rename_and_remove_class_rewrite_files(project):
    seg = label_path(project.folder / "demo_01.tif")
    counts = np.bincount(load_labels(seg).classes)
    assert project.rename_class(1, "disc") == [seg]
    assert load_labels(seg).class_names == ["unassigned", "disc", "elongated"]
    assert Project.open(project.folder).class_names == ["unassigned", "disc", "elongated"]
    project.remove_class(1)
    after = load_labels(seg)
    assert after.class_names == ["unassigned", "elongated"]
    assert (after.classes == 0).sum() == counts[0] + counts[1] and (after.classes == 1).sum() == counts[2]


def test_chained_renames_reach_the_open_labels_and_make_no_extra_class(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))
    counts = np.bincount(ed.labels.classes, minlength=3).tolist()
    for name in ("frag", "fragment", "debris"):
        ed.save()
        project.rename_class(1, name)
        ed.file_version = FileVersion.of(ed.label_file)  # the page adopts the rewrite (Workspace.adopt_rewritten)
        patch = ed.rename_class(1, name)
        assert ed.labels.class_names == ["unassigned", name, "elongated"] and patch.classes is not None
    ed.save()
    saved = load_labels(ed.label_file)
    assert saved.class_names == ["unassigned", "debris", "elongated"]
    assert np.bincount(saved.classes, minlength=3).tolist() == counts
    reopened = Project.open(project.folder)
    assert reopened.class_names == ["unassigned", "debris", "elongated"]
    ed2 = Editor(reopened)
    ed2.open(Item(project.folder / "demo_01.tif"))
    assert ed2.labels.class_names == ["unassigned", "debris", "elongated"]


def test_class_removal_is_undone_in_the_open_image_and_in_every_other_file(project):
    from mcp_core.labels import save_labels

    folder = project.folder
    seg1, seg2 = label_path(folder / "demo_01.tif"), label_path(folder / "demo_02.tif")
    truth = load_labels(seg1)
    round_ids = np.flatnonzero(truth.classes == 1)  # "round" masks
    elongated_ids = np.flatnonzero(truth.classes == 2)
    assert round_ids.size and elongated_ids.size
    save_labels(seg2, truth, image_path=folder / "demo_02.tif")  # a second file using the class
    ed = Editor(project)
    ed.open(Item(folder / "demo_01.tif"))
    removal = project.remove_class(1, skip=ed.label_file)  # the open file is the editor's
    assert removal.files == [seg2] and removal.masks == {seg2: round_ids.tolist()}
    assert load_labels(seg2).class_names == ["unassigned", "elongated"]
    assert load_labels(seg1).class_names == ["unassigned", "round", "elongated"]  # left to the editor
    ed.remove_class(1)
    assert ed.labels.class_names == ["unassigned", "elongated"]
    assert (ed.labels.classes[round_ids] == 0).all() and (ed.labels.classes[elongated_ids] == 1).all()
    ed.undo()  # one step back: class and assignments
    assert ed.labels.class_names == ["unassigned", "round", "elongated"]
    np.testing.assert_array_equal(ed.labels.classes, truth.classes)
    assert project.restore_class(removal, skip=ed.label_file) == [seg2]
    assert project.class_names == ["unassigned", "round", "elongated"]
    assert Project.open(folder).class_names == ["unassigned", "round", "elongated"]
    back = load_labels(seg2)
    names = [back.class_names[c] for c in back.classes]
    assert [names[i] for i in round_ids] == ["round"] * round_ids.size
    assert [names[i] for i in elongated_ids] == ["elongated"] * elongated_ids.size


def test_labels_with_other_class_order_map_by_name(project):
    from mcp_core.labels import LabelSet, save_labels

    masks = np.zeros((96, 96), np.uint16)
    masks[:10, :10] = 1
    save_labels(label_path(project.folder / "demo_03.tif"), LabelSet(masks, [0, 1], ["unassigned", "elongated"]))
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_03.tif"))
    assert ed.labels.class_names[ed.labels.classes[1]] == "elongated"


def test_model_result_replaces_or_keeps_as_one_undoable_edit(project):
    ed = Editor(project)
    ed.open(Item(project.folder / "demo_01.tif"))
    mine = ed.labels.masks.copy()
    n = ed.labels.count
    result = np.zeros_like(mine)
    result[:8, :8] = 1
    result[-8:, -8:] = 2
    # the model's class order differs from the project's: matched by name, unknown names are added
    ed.replace(result, np.array([0, 1, 2]), ["background", "elongated", "mitotic"], keep_existing=True)
    assert ed.labels.count >= n  # nothing of mine is lost
    np.testing.assert_array_equal(ed.labels.masks[mine > 0], mine[mine > 0])
    assert "mitotic" in project.class_names
    new_ids = [i for i in ed.labels.ids if i > mine.max()]
    names = {ed.labels.class_names[ed.labels.classes[i]] for i in new_ids}
    assert names <= {"elongated", "mitotic"}
    ed.undo()
    np.testing.assert_array_equal(ed.labels.masks, mine)
    ed.replace(result, np.array([0, 1, 2]), ["background", "elongated", "mitotic"], keep_existing=False)
    assert ed.labels.count == 2
