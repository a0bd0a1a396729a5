"""The association plugin on hand-made arrays: a parent with two children, an orphan, a child over two parents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from mcp_app.cli import main
from mcp_core.errors import ParameterError
from mcp_core.labels import LabelSet, save_labels
from mcp_core.measure import FrameData, run_labels, run_measurements
from mcp_core.measure.tables import read_table
from mcp_plugins import association


def scene():
    """Parents 1 (rows 0-5, cols 0-5) and 2 (rows 0-5, cols 6-11); children 1 (4 px) and 2 (6 px) inside parent 1,
    3 (4 px) in the background, 4 (10 px) with 4 px in parent 1 and 6 px in parent 2.

    Channel 0 is 10, 20, 99 and 50 on children 1-4 and 1 elsewhere; channel 1 is 2 everywhere.
    """
    parents = np.zeros((10, 12), np.uint16)
    parents[0:6, 0:6] = 1
    parents[0:6, 6:12] = 2
    children = np.zeros_like(parents)
    children[1:3, 1:3] = 1
    children[3:5, 1:4] = 2
    children[7:9, 8:10] = 3
    children[1:3, 4:9] = 4
    image = np.ones((10, 12, 2))
    image[..., 1] = 2
    for child, value in ((1, 10), (2, 20), (3, 99), (4, 50)):
        image[children == child, 0] = value
    return parents, children, image


def test_children_to_parents_by_hand():
    parents, children, image = scene()
    result = association.compute(FrameData.build(parents, image, second=children), association.AssociationParams())
    cols = result.columns
    assert cols["n_children"].tolist() == [2, 1]
    assert cols["children_area"].tolist() == [10, 10]
    assert cols["children_mean_c0"].tolist() == pytest.approx([(4 * 10 + 6 * 20) / 10, 50.0])
    assert cols["children_mean_c1"].tolist() == [2.0, 2.0]
    table = pd.DataFrame(result.tables["children"])
    assert table["child_id"].tolist() == [1, 2, 3, 4]
    assert table["parent_id"].tolist() == [1, 1, 0, 2]  # 3 is an orphan; 4 goes to the parent holding 60 %
    assert table["overlap_area"].tolist() == [4, 6, 0, 6]
    assert table["overlap_fraction"].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.6])
    assert table["n_parents_overlapped"].tolist() == [1, 1, 0, 2]
    assert table["child_area"].tolist() == [4, 6, 4, 10]
    assert table["child_mean_c0"].tolist() == [10.0, 20.0, 99.0, 50.0]
    outlines, links = result.overlays()
    assert outlines.ids.tolist() == [1, 2, 3, 4]
    assert links.ids.tolist() == [1, 2, 4]
    # child 1's centre (row 1.5, col 1.5) to parent 1's (2.5, 2.5), as pixel-centre (x, y)
    assert links.data[0].tolist() == [[2.0, 2.0], [3.0, 3.0]]


def test_minimum_overlap_makes_the_straddling_child_an_orphan():
    parents, children, image = scene()
    result = association.compute(FrameData.build(parents, image, second=children),
                                 association.AssociationParams(min_overlap=0.7))
    assert result.columns["n_children"].tolist() == [2, 0]
    assert np.isnan(result.columns["children_mean_c0"][1])
    table = result.tables["children"]
    assert table["parent_id"].tolist() == [1, 1, 0, 0]
    assert table["overlap_area"].tolist() == [4, 6, 0, 6]  # the best overlap is still reported


def test_a_tie_goes_to_the_smaller_parent_id():
    parents = np.array([[2, 2, 1, 1]])
    children = np.array([[1, 1, 1, 1]])
    table = association.associate(parents, children, 0.5)
    assert table["parent_id"].tolist() == [1] and table["overlap_fraction"].tolist() == [0.5]


def test_compute_without_children_says_so():
    parents, _, image = scene()
    with pytest.raises(ParameterError, match="needs a second label set"):
        association.compute(FrameData.build(parents, image), association.AssociationParams())


def test_run_labels_needs_the_second_label_set():
    parents, children, image = scene()
    with pytest.raises(ParameterError, match="association need a second label set"):
        run_labels(parents, image, ["association"])
    result = run_labels(LabelSet(parents), image, ["basic", "association"], second=LabelSet(children),
                        image_name="cells.tif")
    assert result.objects["n_children"].tolist() == [2, 1] and result.objects["area"].tolist() == [36, 36]
    assert result.tables["children"][["image", "child_id", "parent_id"]].values.tolist() == [
        ["cells.tif", 1, 1], ["cells.tif", 2, 1], ["cells.tif", 3, 0], ["cells.tif", 4, 2]]


@pytest.fixture
def folder(tmp_path):
    """Two images: the scene, and the scene without children file (reported and skipped)."""
    parents, children, image = scene()
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", np.moveaxis(image, -1, 0), metadata={"axes": "CYX"})
        save_labels(tmp_path / f"{name}_seg.npy", LabelSet(parents))
    tifffile.imwrite(tmp_path / "a_nuclei_masks.tif", children)
    save_labels(tmp_path / "a_pred.npy", LabelSet(children))
    return tmp_path


def test_second_source_from_a_file_template_or_the_predictions(folder):
    for second in ("{stem}_nuclei_masks.tif", "pred"):
        result = run_measurements(folder, ["association"], source="seg", second_source=second)
        assert result.objects["image"].tolist() == ["a.tif", "a.tif"]
        assert result.objects["n_children"].tolist() == [2, 1]
        assert result.tables["children"]["parent_id"].tolist() == [1, 1, 0, 2]
        assert any("b.tif has no second label set" in m for m in result.skipped)
    with pytest.raises(ParameterError, match="need a second label set"):
        run_measurements(folder, ["association"], source="seg")
    with pytest.raises(ParameterError, match="must be 'pred', 'seg' or a file name template"):
        run_measurements(folder, ["association"], source="seg", second_source="nuclei.tif")


def test_cli_second_source(folder, capsys):
    out = folder / "m.csv"
    rc = main(["measure", str(folder), "-p", "basic,association", "--source", "seg", "--second",
               "{stem}_nuclei_masks.tif", "-o", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert read_table(out)["n_children"].tolist() == [2, 1]
    assert read_table(folder / "m_children.csv")["parent_id"].tolist() == [1, 1, 0, 2]
    rc = main(["measure", str(folder), "-p", "association", "--source", "seg", "-q"])
    assert rc == 2 and "need a second label set" in capsys.readouterr().err
