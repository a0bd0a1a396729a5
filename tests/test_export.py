"""Label exports: pixel-exact outlines, ImageJ ROI zip, QuPath GeoJSON, label TIFF pair; the export command."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from skimage.measure import points_in_poly

from mcp_core.export import export_labels, geojson_features, imagej_rois, write_label_tiff
from mcp_core.labels import LabelSet, load_labels
from mcp_core.outlines import label_outlines, outline, signed_area


def fill(polygons, shape):
    """Pixels whose centres fall inside the polygons (outer rings minus holes), as ImageJ and QuPath fill them."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    centres = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
    inside = np.zeros(len(centres), bool)
    for outer, holes in polygons:
        part = points_in_poly(centres, outer)
        for hole in holes:
            part &= ~points_in_poly(centres, hole)
        inside |= part
    return inside.reshape(shape)


@pytest.mark.parametrize(
    "mask,rings",
    [
        (np.ones((1, 1), bool), [[[0, 0], [1, 0], [1, 1], [0, 1]]]),
        (np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool),
         [[[0, 0], [3, 0], [3, 3], [0, 3]], [[1, 1], [1, 2], [2, 2], [2, 1]]]),
    ],
)
def test_outline_corners_by_hand(mask, rings):
    shape = outline(mask, offset=(0, 0))
    got = [shape.polygons[0][0].tolist()] + [h.tolist() for h in shape.polygons[0][1]]
    assert got == rings


def test_outline_areas_and_orientation():
    ring = outline(np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool)).polygons[0]
    assert signed_area(ring[0]) == 9.0 and signed_area(ring[1][0]) == -1.0


def test_diagonal_pixels_are_separate_rings():
    shape = outline(np.array([[1, 0], [0, 1]], bool), offset=(5, 7))
    assert len(shape.polygons) == 2
    assert sorted(p[0].min(axis=0).tolist() for p in shape.polygons) == [[7.0, 5.0], [8.0, 6.0]]


def test_outlines_fill_back_to_the_exact_pixels():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 40), np.int32)
    labels[2:20, 2:20] = (rng.random((18, 18)) > 0.35) * 1  # ragged, with holes and corner contacts
    labels[22:38, 5:30] = 2
    labels[25:30, 10:14] = 0  # a hole
    labels[30:36, 30:38] = 3
    for mask_id, shape in label_outlines(labels).items():
        np.testing.assert_array_equal(fill(shape.polygons, labels.shape), labels == mask_id)
        total = sum(signed_area(o) + sum(signed_area(h) for h in hs) for o, hs in shape.polygons)
        assert total == (labels == mask_id).sum()


def _labels() -> LabelSet:
    masks = np.zeros((20, 30), np.uint16)
    masks[2:6, 3:9] = 1
    masks[10:18, 10:20] = 2
    masks[13:15, 14:16] = 0  # hole
    masks[1:4, 25:28] = 4  # ids need not be contiguous
    return LabelSet(masks, np.array([0, 1, 2, 0, 1]), ["unassigned", "nucleus", "cell"], ["#808080", "#ff0000", "#00ff00"])


def test_imagej_rois_round_trip(tmp_path):
    import roifile

    labels = _labels()
    path = export_labels(labels, tmp_path / "cells_rois.zip", "roi", frame="T2")[0]
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["00001-nucleus.roi", "00002-cell.roi", "00004-nucleus.roi"]
    rois = roifile.roiread(path)
    by_name = {r.name: r for r in rois}
    cell = by_name["00002-cell"]
    assert cell.t_position == 3 and cell.stroke_color == bytes((255, 0, 255, 0)) and cell.group == 2
    for roi, mask_id in ((by_name["00001-nucleus"], 1), (cell, 2)):
        coords = roi.coordinates()
        filled = fill([(coords, [])], labels.shape)
        # ImageJ polygons have no holes: the outer ring fills the hole too
        expected = labels.masks == mask_id
        if mask_id == 2:
            expected[13:15, 14:16] = True
        np.testing.assert_array_equal(filled, expected)
    assert len(imagej_rois(LabelSet(np.zeros((4, 4), np.uint16)))) == 0


def test_geojson_one_feature_per_object_with_class(tmp_path):
    labels = _labels()
    path = export_labels(labels, tmp_path / "cells.geojson", "geojson")[0]
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    feats = {f["properties"]["mask_id"]: f for f in data["features"]}
    assert sorted(feats) == [1, 2, 4]
    assert feats[2]["properties"]["classification"] == {"name": "cell", "color": [0, 255, 0]}
    assert feats[1]["properties"]["objectType"] == "detection"
    geom = feats[2]["geometry"]
    assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 2  # outer ring and the hole
    outer = np.array(geom["coordinates"][0])
    assert (outer[0] == outer[-1]).all()  # closed rings, as GeoJSON wants
    polys = [(np.array(geom["coordinates"][0])[:-1], [np.array(geom["coordinates"][1])[:-1]])]
    np.testing.assert_array_equal(fill(polys, labels.shape), labels.masks == 2)
    unclassified = geojson_features(LabelSet(labels.masks))
    assert all("classification" not in f["properties"] for f in unclassified)


def test_label_tiff_pair_reads_back(tmp_path):
    labels = _labels()
    masks_path, classes_path = write_label_tiff(labels, tmp_path / "cells_masks.tif")
    assert classes_path.name == "cells_classes.tif"
    back = load_labels(masks_path)
    np.testing.assert_array_equal(back.masks, labels.masks)
    assert back.classes[[1, 2, 4]].tolist() == [1, 2, 1]


def test_unknown_format(tmp_path):
    from mcp_core.errors import ParameterError

    with pytest.raises(ParameterError, match="Unknown export format 'svg'"):
        export_labels(_labels(), tmp_path / "x.svg", "svg")  # type: ignore[arg-type]


def test_export_command(tmp_path, capsys):
    from mcp_app.cli import main
    from mcp_core.synthetic import write_demo_project

    write_demo_project(tmp_path, n_images=2, n_labelled=1, shape=(64, 64))
    assert main(["export", str(tmp_path), "--format", "geojson"]) == 0
    out = tmp_path / "exports" / "demo_01.geojson"
    assert out.is_file() and json.loads(out.read_text())["features"]
    assert "demo_02.tif has no seg labels" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "tiff", "-o", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "demo_01_masks.tif").is_file() and (tmp_path / "t" / "demo_01_classes.tif").is_file()
    assert main(["export", str(tmp_path), "--format", "roi", "--source", "pred"]) == 1
