"""The per-class summary on a literal table, and the template plugin as a plugin author would use it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_core.errors import ParameterError
from mcp_core.measure import FrameData, load_module, plugins_of_module
from mcp_core.measure.validate import validate
from mcp_plugins import class_summary

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]

OBJECTS = pd.DataFrame({
    "image": ["a.tif"] * 3 + ["b.tif"] * 2,
    "frame": [""] * 5,
    "mask_id": [1, 2, 3, 1, 2],
    "class_id": [1, 2, 1, 1, 1],
    "class_name": ["round", "long", "round", "round", "round"],
    "area": [10.0, 20.0, 30.0, 40.0, 60.0],
    "bbox_y0": [0, 1, 2, 3, 4],
    "cluster_id": [1, 1, 2, 1, 2],
})
FRAMES = pd.DataFrame({"image": ["a.tif", "b.tif"], "frame": ["", ""], "height": [100, 200], "width": [100, 50],
                       "pixel_size_y": [0.5, np.nan], "pixel_size_x": [0.5, np.nan], "n_objects": [3, 2],
                       "labels_file": ["a_seg.npy", "b_seg.npy"]})


def test_summary_by_hand():
    out = class_summary.compute(OBJECTS, FRAMES, class_summary.SummaryParams(std=True))
    assert out[["image", "class_id", "count"]].values.tolist() == [["a.tif", 1, 2], ["a.tif", 2, 1],
                                                                   ["b.tif", 1, 2], ["b.tif", 2, 0]]
    assert out["class_name"].tolist() == ["round", "long", "round", "long"]
    # a.tif: 10 000 px = 0.01 Mpx, 2500 µm² = 0.0025 mm²; b.tif: 10 000 px, pixel size unknown
    assert out["density_per_mpx"].tolist() == [200.0, 100.0, 200.0, 0.0]
    assert out["density_per_mm2"][:2].tolist() == pytest.approx([800.0, 400.0])
    assert out["density_per_mm2"][2:].isna().all()
    assert out["area_mean"][:3].tolist() == [20.0, 20.0, 50.0] and np.isnan(out["area_mean"][3])
    assert out["area_median"][:3].tolist() == [20.0, 20.0, 50.0]
    assert out["area_std"][0] == pytest.approx(np.std([10, 30], ddof=1))
    # ids and bounding boxes are not measurements
    assert not any(c.startswith(("bbox", "cluster_id", "mask_id")) for c in out.columns)


def test_summary_selected_measurements_and_pooling():
    frames = pd.concat([FRAMES.iloc[:1].assign(frame="T0"), FRAMES.iloc[:1].assign(frame="T1")])
    objects = OBJECTS.iloc[:3].assign(frame=["T0", "T0", "T1"])
    per_frame = class_summary.compute(objects, frames, class_summary.SummaryParams(measurements="area", median=False))
    assert per_frame[["frame", "class_id", "count"]].values.tolist() == [["T0", 1, 1], ["T0", 2, 1], ["T1", 1, 1],
                                                                         ["T1", 2, 0]]
    assert list(per_frame.columns[-1:]) == ["area_mean"]
    pooled = class_summary.compute(objects, frames, class_summary.SummaryParams(per_frame=False))
    assert pooled[["frame", "class_id", "count"]].values.tolist() == [["", 1, 2], ["", 2, 1]]
    assert pooled["density_per_mpx"].tolist() == [100.0, 50.0]  # two frames of 10 000 px each
    with pytest.raises(ParameterError, match="volume"):
        class_summary.compute(objects, frames, class_summary.SummaryParams(measurements="volume"))


def test_template_validates_and_measures():
    reports = validate(str(REPO / "plugins" / "template.py"))
    assert [r.plugin for r in reports] == ["bright_fraction"]
    assert reports[0].ok, reports[0].problems
    plugin = plugins_of_module(load_module(str(REPO / "plugins" / "template.py")))[0]
    labels = np.array([[1, 1, 0, 2], [1, 1, 0, 2]])
    image = np.array([[0, 2000, 0, 5000], [0, 0, 0, 0]], float)
    result = plugin.compute(FrameData.build(labels, image), plugin.params(threshold=1000))
    out = result.columns
    assert out["bright_fraction"].tolist() == [0.25, 0.5]
    assert out["bright_area"].tolist() == [1, 1]
    (layer,) = result.overlays  # the bright pixels, labelled with their object's id
    assert (layer.name, layer.kind) == ("bright", "labels") and layer.data.tolist() == [[0, 1, 0, 2], [0, 0, 0, 0]]


def test_template_is_not_registered():
    from mcp_core.measure import list_plugins

    assert "bright_fraction" not in {p.name for p in list_plugins()}
