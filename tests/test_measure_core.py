"""The plugin system: discovery by entry point, the contract checks, the runner and its handling of bad input."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.errors import ImageReadError, ParameterError
from mcp_core.labels import LabelSet, save_labels
from mcp_core.measure import (
    FrameData,
    Overlay,
    Plugin,
    PluginError,
    PluginOutput,
    grouped,
    list_plugins,
    measure,
    measure_labels,
    refresh,
    run_measurements,
)
from mcp_core.measure.registry import catalog
from mcp_core.measure.validate import validate, validate_plugin

BUILTINS = {"basic", "perimeter_intensity", "clusters", "condensates", "tracking", "class_summary", "association"}


# ------------------------------------------------------------------------------------------ discovery
def test_builtins_register_through_the_entry_point_group():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="multicellpose.measure")}
    assert BUILTINS <= set(eps)
    found = {p.name: p for p in list_plugins()}
    assert BUILTINS <= set(found)
    assert all(found[n].source.startswith("mcp_plugins.") for n in BUILTINS)
    assert not catalog().problems


def test_listing_plugins_and_schemas_imports_no_torch():
    code = ("import sys, json\nfrom mcp_core.measure import list_plugins\n"
            "json.dumps([p.summary() for p in list_plugins()])\n"
            "print(sorted(m for m in ('torch', 'cellpose', 'nicegui') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_schema_carries_types_defaults_bounds_choices_and_help():
    schema = {p.name: p.schema() for p in list_plugins()}
    gap = schema["basic"]["properties"]["annulus_gap"]
    assert gap["type"] == "integer" and gap["default"] == 2 and gap["minimum"] == 0 and gap["description"]
    band = schema["perimeter_intensity"]["properties"]["band"]
    assert band["enum"] == ["inner", "outer", "symmetric"]
    for name, s in schema.items():
        assert all(prop.get("description") for prop in s["properties"].values()), name


def test_a_broken_entry_point_is_reported_and_the_rest_still_load(monkeypatch):
    real = importlib.metadata.entry_points

    def with_broken(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "multicellpose.measure":
            eps.append(importlib.metadata.EntryPoint("broken", "no_such_module_for_mcp", "multicellpose.measure"))
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", with_broken)
    refresh()
    try:
        assert BUILTINS <= {p.name for p in list_plugins()}
        assert any("no_such_module_for_mcp" in p for p in catalog().problems)
    finally:
        monkeypatch.undo()
        refresh()


def test_an_unusable_plugin_is_refused_with_its_reason(monkeypatch, tmp_path):
    (tmp_path / "mcp_unusable_plugin.py").write_text(
        "from mcp_core.measure import Plugin, hookimpl\n"
        "@hookimpl\ndef mcp_measure_plugins():\n"
        "    return [Plugin('unusable', 'U', 'Params are not a model.', dict, {'x': 'x'}, lambda d, p: {})]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def with_unusable(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "multicellpose.measure":
            eps.append(importlib.metadata.EntryPoint("unusable", "mcp_unusable_plugin", "multicellpose.measure"))
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", with_unusable)
    refresh()
    try:
        assert "unusable" not in {p.name for p in list_plugins()}
        assert any("'unusable' from mcp_unusable_plugin is not usable: params must be a pydantic" in p
                   for p in catalog().problems)
    finally:
        monkeypatch.undo()
        refresh()
    with pytest.raises(PluginError, match="is not usable: compute is not callable"):
        run_measurements(tmp_path, [_plugin(compute=None)])


# ----------------------------------------------------------------------------------------- contract
class GoodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(1.0, ge=0, description="Multiplier.")


class SloppyParams(BaseModel):
    scale: float


def _area(data, p):
    return {"size": np.bincount(data.labels.ravel(), minlength=int(data.labels.max(initial=0)) + 1)[data.ids] * p.scale}


def _plugin(**kw) -> Plugin:
    base = dict(name="demo", title="Demo", description="A demo.", params=GoodParams, columns={"size": "Pixels."},
                compute=_area)
    return Plugin(**{**base, **kw})


def _write_into_input(data, p):
    data.image[0, 0, 0] = 1
    return _area(data, p)


@pytest.mark.parametrize(
    "plugin,expected",
    [
        (_plugin(name="Bad Name"), "name 'Bad Name' must be lower case"),
        (_plugin(params=SloppyParams), "parameter 'scale' has no default"),
        (_plugin(params=SloppyParams), "parameter 'scale' has no description"),
        (_plugin(params=SloppyParams), "extra='forbid'"),
        (_plugin(params=dict), "params must be a pydantic BaseModel"),
        (_plugin(columns={"size": "Pixels.", "mask_id": "id"}), "column 'mask_id' is added by the host"),
        (_plugin(columns={}), "columns must be a non-empty mapping"),
        (_plugin(compute=lambda data: {}), "cannot be called with 2 positional arguments"),
        (_plugin(compute=lambda d, p: {"size": np.zeros(len(d.ids) + 1)}), "rows for"),
        (_plugin(compute=lambda d, p: {**_area(d, p), "extra": np.zeros(len(d.ids))}), "undeclared column(s) extra"),
        (_plugin(compute=lambda d, p: {}), "did not return declared column(s) size"),
        (_plugin(compute=lambda d, p: [1, 2]), "must return a dict of columns or a pandas DataFrame"),
        (_plugin(compute=lambda d, p: {"size": np.zeros((len(d.ids), 2))}), "columns must be 1-D"),
        (_plugin(compute=_write_into_input), "must not write into their inputs"),
        (_plugin(compute=lambda d, p: 1 / 0), "raised ZeroDivisionError"),
        (_plugin(scope="series", compute=lambda fs, p: {"size": np.zeros(sum(len(f.ids) for f in fs))}),
         "returned no 't' column"),
        (_plugin(scope="series", compute=lambda fs, p: {"t": [0, 0], "mask_id": [1, 1], "size": [1, 1]}),
         "more than one row for an object"),
        (_plugin(scope="series", compute=lambda fs, p: {"t": [5], "mask_id": [1], "size": [1]}),
         "outside the series of 3 frame(s)"),
        (_plugin(scope="series", compute=lambda fs, p: {"t": [0], "mask_id": [999], "size": [1]}),
         "returned a row for mask 999 at t = 0, which does not exist"),
        (_plugin(review=lambda d, p: np.zeros((2, 2), int)), "review image must be an integer array of shape"),
        (_plugin(scope="table", review=lambda d, p: None), "review images are only supported for frame plugins"),
        (_plugin(scope="table", overlays={"dots": "Dots."}), "only supported for frame and series plugins"),
        (_plugin(scope="series", second_labels=True), "second label set is only supported for frame plugins"),
        (_plugin(tables={"Bad Table": {"n": "N."}}), "table name 'Bad Table' must be lower case"),
        (_plugin(tables={"parts": {"image": "Image."}}), "declares 'image' or 'frame'"),
        (_plugin(tables={"parts": {"n": ""}}), "column 'n' of table 'parts' has no description"),
        (_plugin(overlays={"dots": ""}), "overlay layer 'dots' has no description"),
        (_plugin(compute=lambda d, p: PluginOutput(_area(d, p), tables={"parts": {"n": [1]}})),
         "undeclared table 'parts'"),
        (_plugin(tables={"parts": {"n": "N."}}), "did not return declared table(s) parts"),
        (_plugin(tables={"parts": {"n": "N.", "m": "M."}},
                 compute=lambda d, p: PluginOutput(_area(d, p), tables={"parts": {"n": [1]}})),
         "did not return declared column(s) m in table 'parts'"),
        (_plugin(compute=lambda d, p: PluginOutput(_area(d, p), overlays=[Overlay.points("dots", [[1, 2]], [1])])),
         "overlay layer 'dots' is not declared"),
        (_plugin(overlays={"dots": "Dots."},
                 compute=lambda d, p: PluginOutput(_area(d, p), overlays=[Overlay.points("dots", [[1, 2]], [1, 2])])),
         "has 1 element(s) but 2 id(s)"),
        (_plugin(overlays={"dots": "Dots."},
                 compute=lambda d, p: PluginOutput(_area(d, p),
                                                   overlays=[Overlay.labels("dots", np.ones((2, 2), int))])),
         "must be an integer image of shape (64, 64)"),
        (_plugin(overlays={"dots": "Dots."},
                 compute=lambda d, p: PluginOutput(_area(d, p),
                                                   overlays=[Overlay.lines("dots", [[[0, np.nan]]], [1])])),
         "must hold finite (N, 2) arrays"),
        (_plugin(compute=lambda d, p: PluginOutput(_area(d, p), overlays="dots")), "must be a list of Overlay layers"),
        (_plugin(overlays={"dots": "Dots."}, compute=lambda d, p: PluginOutput(_area(d, p), overlays=lambda: 1 / 0)),
         "failed making its overlays on dry-run.tif: ZeroDivisionError"),
        (_plugin(scope="series", overlays={"dots": "Dots."},
                 compute=lambda fs, p: PluginOutput({"t": [], "mask_id": [], "size": []}, overlays={7: []})),
         "overlays for t = 7, outside the series"),
    ],
)
def test_validator_names_each_violation(plugin, expected):
    report = validate_plugin(plugin)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


def test_validator_passes_a_sound_plugin_and_every_builtin():
    assert validate_plugin(_plugin()).ok
    for name in BUILTINS:
        (report,) = validate(name)
        assert report.ok, (name, report.problems)
        assert len(report.passed) >= 3


def test_validate_module_problems(tmp_path):
    nohook = tmp_path / "nohook.py"
    nohook.write_text("x = 1\n")
    assert "no @hookimpl function named mcp_measure_plugins" in validate(str(nohook))[0].problems[0]
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_for_mcp\n")
    assert "Importing plugin file" in validate(str(broken))[0].problems[0]
    clash = tmp_path / "clash.py"
    clash.write_text("from mcp_core.measure import hookimpl\nfrom mcp_plugins.basic import PLUGIN\nimport dataclasses\n"
                     "@hookimpl\ndef mcp_measure_plugins():\n    return [dataclasses.replace(PLUGIN, source='')]\n")
    assert any("already used by the installed plugin" in p for p in validate(str(clash))[0].problems)
    assert "No plugin or module named" in validate("no_such_plugin_or_module")[0].problems[0]


# ------------------------------------------------------------------------------------------- runner
def _project(tmp_path, n=3, shape=(64, 64)):
    import tifffile

    from mcp_core.synthetic import make_sample

    for i in range(n):
        image, labels = make_sample(seed=i, shape=shape, n_objects=5)
        tifffile.imwrite(tmp_path / f"img{i}.tif", np.moveaxis(image, -1, 0), metadata={"axes": "CYX"})
        save_labels(tmp_path / f"img{i}_seg.npy", labels)
    return tmp_path


def test_folder_run_reports_and_skips_bad_images(tmp_path):
    import tifffile

    _project(tmp_path, n=2)
    tifffile.imwrite(tmp_path / "wrong_shape.tif", np.zeros((2, 32, 32), np.uint16), metadata={"axes": "CYX"})
    save_labels(tmp_path / "wrong_shape_seg.npy", LabelSet(np.ones((40, 40), np.uint16)))
    tifffile.imwrite(tmp_path / "unlabelled.tif", np.zeros((32, 32), np.uint16))
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00garbage")
    tifffile.imwrite(tmp_path / "badlabels.tif", np.zeros((32, 32), np.uint16))
    (tmp_path / "badlabels_seg.npy").write_bytes(b"not a numpy file")

    def fussy(data, p):
        if data.image_name == "img1.tif":
            raise RuntimeError("cannot cope with this one")
        return _area(data, p)

    calls = []
    result = run_measurements(tmp_path, ["basic", _plugin(compute=fussy)], source="seg",
                              progress=lambda d, t, m: calls.append((d, t)))
    assert result.objects["image"].unique().tolist() == ["img0.tif"]
    text = "\n".join(result.skipped)
    assert "img1.tif" in text and "Plugin 'demo' failed on img1.tif" in text and "cannot cope" in text
    assert "wrong_shape.tif: the labels (wrong_shape_seg.npy) have shape (40, 40) but the image is (32, 32)" in text
    assert "unlabelled.tif has no labels (unlabelled_seg.npy not found)" in text
    assert "corrupt.tif" in text and "badlabels_seg.npy" in text
    assert len(result.skipped) == 5
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    assert result.frames["image"].tolist() == ["img0.tif"]


def test_measure_returns_ids_classes_and_columns(tmp_path):
    _project(tmp_path, n=2)
    df = measure(tmp_path, ["basic", "clusters"], {"basic": {"annulus_gap": 1}}, source="seg")
    assert list(df.columns[:5]) == ["image", "frame", "mask_id", "class_id", "class_name"]
    assert {"area", "mean_c1", "cluster_id"} <= set(df.columns)
    assert set(df["class_name"]) <= {"round", "elongated"} and df.attrs["source"] == "seg"
    assert df.attrs["skipped"] == []
    one = df[df["image"] == "img0.tif"]
    assert one["mask_id"].tolist() == sorted(one["mask_id"])


def test_source_pred_or_seg(tmp_path):
    _project(tmp_path, n=1)
    one = np.zeros((64, 64), np.uint16)
    one[5:9, 5:9] = 1
    save_labels(tmp_path / "img0_pred.npy", LabelSet(one))
    assert len(measure(tmp_path, "basic", source="pred")) == 1
    assert len(measure(tmp_path, "basic", source="seg")) > 1
    with pytest.raises(ParameterError, match="'pred'.*'seg'"):
        measure(tmp_path, "basic", source="labels")


@pytest.mark.parametrize(
    "plugins,params,error,match",
    [
        (["nope"], None, PluginError, "Unknown plugin 'nope'; installed plugins: association, basic"),
        (["basic", "basic"], None, PluginError, "given more than once"),
        ([], None, PluginError, "No plugin chosen"),
        (["basic"], {"clusters": {}}, ParameterError, "plugin(s) clusters that are not being run"),
        (["basic"], {"basic": {"annulus_gap": -1}}, ParameterError, "Plugin 'basic': invalid parameter(s): annulus_gap"),
        (["basic"], {"basic": {"anulus_gap": 1}}, ParameterError, "anulus_gap: Extra inputs are not permitted"),
        (["basic", "tracking", _plugin(columns={"area": "clash"}, name="clash")], None, PluginError,
         "both return column 'area'"),
    ],
)
def test_bad_requests_fail_before_any_work(tmp_path, plugins, params, error, match):
    _project(tmp_path, n=1)
    with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")):
        run_measurements(tmp_path, plugins, params, source="seg")


def test_missing_paths(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        measure(tmp_path / "nowhere", "basic")
    with pytest.raises(ImageReadError, match="No images to measure"):
        measure(tmp_path, "basic")


def test_cancel_and_reviews(tmp_path):
    _project(tmp_path, n=3)
    seen = []
    result = run_measurements(tmp_path, ["basic", "condensates"], source="seg", reviews=True,
                              progress=lambda d, t, m: seen.append(d), cancel=lambda: len(seen) >= 2)
    assert result.cancelled and result.objects["image"].nunique() == 1
    ((image, frame, plugin), review), = result.reviews.items()
    assert (image, frame, plugin) == ("img0.tif", "", "condensates") and review.shape == (64, 64)


def test_extra_tables_and_overlays_through_a_folder_run(tmp_path):
    _project(tmp_path, n=2)
    result = run_measurements(tmp_path, ["basic", "clusters", "condensates"], {"clusters": {"min_interface": 1}},
                              source="seg", overlays=True)
    table = result.tables["clusters"]
    assert list(table.columns[:3]) == ["image", "frame", "cluster_id"]
    objects = result.objects
    for image in ("img0.tif", "img1.tif"):
        in_clusters = objects[(objects["image"] == image) & (objects["cluster_id"] > 0)]
        rows = table[table["image"] == image]
        assert rows["n_objects"].sum() == len(in_clusters)  # every clustered object is a member of one row
        assert sorted(rows["cluster_id"]) == sorted(in_clusters["cluster_id"].unique())
    assert sorted(result.overlays) == [(f"img{i}.tif", "", p) for i in range(2) for p in ("clusters", "condensates")]
    assert [o.name for o in result.overlays[("img0.tif", "", "condensates")]] == ["droplets"]
    without = run_measurements(tmp_path, ["clusters"], source="seg")
    assert not without.overlays and "clusters" in without.tables
    some = run_measurements(tmp_path, ["clusters", "condensates"], source="seg", overlays=["condensates"])
    assert sorted(some.overlays) == [("img0.tif", "", "condensates"), ("img1.tif", "", "condensates")]


def test_series_tables_and_overlays_and_empty_tables(tmp_path):
    import tifffile

    masks = np.zeros((3, 20, 20), np.uint16)
    for t in range(3):
        masks[t, 5:9, 2 + 2 * t:6 + 2 * t] = 1
    tifffile.imwrite(tmp_path / "movie.tif", masks.astype(np.float32) * 100, metadata={"axes": "TYX"})
    for t in range(3):
        save_labels(tmp_path / f"movie__T{t}_seg.npy", LabelSet(masks[t]))
    result = run_measurements(tmp_path, ["tracking", "perimeter_intensity"], source="seg", overlays=["tracking"])
    assert result.tables["tracks"][["image", "track_id", "start_t", "end_t", "n_frames"]].values.tolist() == [
        ["movie.tif", 1, 0, 2, 3]]
    assert result.objects["track_status"].tolist() == ["new", "continued", "continued"]
    assert sorted(result.overlays) == [("movie.tif", f"T{t}", "tracking") for t in range(3)]
    (trail,) = result.overlays[("movie.tif", "T2", "tracking")]
    assert trail.data[0][:, 0].tolist() == [4.0, 6.0, 8.0]  # centroid columns 3.5, 5.5, 7.5 as pixel centres
    empty = run_measurements(tmp_path / "movie.tif", ["clusters"], source="pred")  # no predictions at all
    assert empty.tables["clusters"].empty and "member_ids" in empty.tables["clusters"].columns


def test_measure_labels_in_memory_and_shape_mismatch():
    from mcp_core.synthetic import make_sample

    image, labels = make_sample(seed=3, shape=(48, 48), n_objects=4)
    df = measure_labels(labels, image, ["basic"], image_name="mem.tif")
    assert len(df) == labels.count and (df["image"] == "mem.tif").all()
    assert df["class_name"].tolist() == [labels.class_names[labels.classes[i]] for i in labels.ids]
    with pytest.raises(ParameterError, match="labels have shape \\(48, 48\\) but the image has shape \\(40, 48\\)"):
        measure_labels(labels, image[:40], ["basic"])
    with pytest.raises(PluginError, match="need several frames"):
        measure_labels(labels, image, ["tracking"])


def test_frame_data_is_read_only():
    data = FrameData.build(np.ones((2, 2), int), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="read-only"):
        data.labels[0, 0] = 5


# ------------------------------------------------------------------------------------------ grouped
@pytest.mark.parametrize("kind", ["integer", "float32", "float64"])
@pytest.mark.parametrize("q", [0, 13.5, 50, 90, 100])
def test_grouped_percentiles_match_numpy(kind, q):
    rng = np.random.default_rng(int(q))
    groups = rng.integers(0, 7, size=500)
    values = {"integer": rng.integers(-20, 50, size=500).astype(float),
              "float32": rng.normal(size=500).astype(np.float32).astype(float),
              "float64": rng.normal(size=500)}[kind]
    got = grouped.percentiles(groups, values, q, 9)
    for g in range(9):
        sel = values[groups == g]
        assert np.isnan(got[g]) if sel.size == 0 else got[g] == pytest.approx(np.percentile(sel, q))
