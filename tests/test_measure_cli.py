"""The ``measure``, ``plugins`` and ``tracks-export`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcp_app.cli import main
from mcp_core.cli_measure import parse_param_options
from mcp_core.errors import ParameterError
from mcp_core.measure.tables import parquet_available, read_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    from mcp_core.synthetic import write_demo_project

    return write_demo_project(tmp_path / "proj", n_images=3, n_labelled=2, shape=(64, 64))


def test_measure_writes_tables_and_reports_skips(project, capsys):
    rc = main(["measure", str(project), "-p", "basic,clusters,class_summary", "--param", "basic.annulus_gap=3",
               "--param", "clusters.min_interface=1", "--param", "clusters.same_class=false",
               "--source", "seg", "--review-dir", str(project / "review"), "-q"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "from labels (_seg.npy)" in out and "1 skipped" in out
    assert "skipped: demo_03.tif has no labels (demo_03_seg.npy not found)" in err
    df = read_table(project / "measurements.csv")
    assert df["image"].unique().tolist() == ["demo_01.tif", "demo_02.tif"]
    assert (df["frame"] == "").all() and {"area", "cluster_id"} <= set(df.columns)
    summary = read_table(project / "measurements_class_summary.csv")
    assert summary.groupby("image")["count"].sum().tolist() == df.groupby("image").size().tolist()
    clusters = read_table(project / "measurements_clusters.csv")  # one row per cluster, beside the table
    assert clusters[["image", "frame", "cluster_id", "n_objects", "class_mix"]].fillna("").values.tolist() == [
        ["demo_01.tif", "", 1, 3, "round:1;elongated:2"]]
    members = sorted(int(i) for i in str(clusters["member_ids"][0]).split(";"))
    assert members == sorted(df[(df["image"] == "demo_01.tif") & (df["cluster_id"] == 1)]["mask_id"])
    assert sorted(p.name for p in (project / "review").iterdir()) == ["demo_01_clusters_review.tif",
                                                                      "demo_02_clusters_review.tif"]


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["-p", "nope"], 2, "Unknown plugin 'nope'"),
        (["--param", "basic.annulus_gap=-2"], 2, "Plugin 'basic': invalid parameter(s): annulus_gap"),
        (["--param", "annulus_gap=2"], 2, "must look like plugin.parameter=value"),
        (["--source", "pred"], 1, "nothing was measured"),
        (["-o", "x.xlsx"], 2, "use a .csv or .parquet file name"),
    ],
)
def test_measure_errors(project, capsys, argv, code, message):
    assert main(["measure", str(project), "-q", "--source", "seg", *argv]) == code
    assert message in capsys.readouterr().err


def test_parquet(project, tmp_path, capsys):
    rc = main(["measure", str(project), "--source", "seg", "-q", "-o", str(tmp_path / "m.parquet")])
    if parquet_available():
        assert rc == 0 and len(read_table(tmp_path / "m.parquet")) > 0
    else:
        assert rc == 2 and "Parquet needs pyarrow" in capsys.readouterr().err


def test_param_options():
    assert parse_param_options(["basic.annulus_gap=3", "condensates.method=percentile", "clusters.same_class=false"]) \
        == {"basic": {"annulus_gap": 3}, "condensates": {"method": "percentile"}, "clusters": {"same_class": False}}
    with pytest.raises(ParameterError, match="must look like"):
        parse_param_options(["basic=3"])


def test_params_json_file(project, tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"perimeter_intensity": {"band": "outer", "thickness": 3}}))
    assert main(["measure", str(project), "-p", "perimeter_intensity", "--params", str(params), "--source", "seg",
                 "-q", "-o", str(tmp_path / "m.csv")]) == 0
    assert read_table(tmp_path / "m.csv")["band_area"].gt(0).all()
    params.write_text("[1, 2]")
    assert main(["measure", str(project), "--params", str(params), "--source", "seg", "-q"]) == 2
    assert "must hold" in capsys.readouterr().err


def test_plugins_list_and_json(capsys):
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "basic" in out and "annulus_gap=2" in out and "tracking" in out
    assert "tables: clusters; overlays: cluster_outlines" in out
    assert "overlays: children, child_links; needs a second label set (--second)" in out
    assert main(["plugins", "list", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["tracking"]["scope"] == "series"
    assert set(listed["tracking"]["tables"]["tracks"]) >= {"track_id", "ended"}
    assert listed["association"]["second_labels"] is True and "trails" in listed["tracking"]["overlays"]
    assert listed["basic"]["params"]["properties"]["background_percentile"]["maximum"] == 100


def test_plugins_validate(tmp_path, capsys):
    assert main(["plugins", "validate", str(REPO / "plugins" / "template.py")]) == 0
    assert "bright_fraction: OK" in capsys.readouterr().out
    assert main(["plugins", "validate", "condensates"]) == 0
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(
        "import numpy as np\nfrom pydantic import BaseModel\nfrom mcp_core.measure import Plugin, hookimpl\n"
        "class P(BaseModel):\n    k: int = 1\n"
        "def compute(data, params):\n    return {'value': np.zeros(3)}\n"
        "@hookimpl\ndef mcp_measure_plugins():\n"
        "    return [Plugin('bad_one', 'Bad', 'Broken on purpose.', P, {'value': 'v'}, compute)]\n")
    assert main(["plugins", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad_one: " in out and "has no description" in out and "extra='forbid'" in out


def test_tracks_export_from_table_and_from_images(tmp_path, capsys):
    import tifffile

    from mcp_core.labels import LabelSet, save_labels

    stack = np.zeros((5, 48, 48), np.uint16)
    for t in range(5):
        labels = np.zeros((48, 48), np.uint16)
        labels[10:16, 5 + 4 * t:11 + 4 * t] = 1
        labels[30:36, 40 - 4 * t:46 - 4 * t] = 2
        stack[t] = labels * 100
        save_labels(tmp_path / f"movie__T{t}_seg.npy", LabelSet(labels))
    tifffile.imwrite(tmp_path / "movie.tif", stack, imagej=True, metadata={"axes": "TYX"})
    assert main(["tracks-export", str(tmp_path / "movie.tif"), "--source", "seg", "--values", "mean_c0", "-q",
                 "-o", str(tmp_path / "tr")]) == 0
    wide = read_table(tmp_path / "tr_wide.csv")
    assert list(wide.columns) == ["t", "track1_x", "track1_y", "track1_mean_c0", "track2_x", "track2_y",
                                  "track2_mean_c0"]
    assert wide["track1_x"].diff().dropna().tolist() == [4.0] * 4
    assert wide["track2_mean_c0"].tolist() == [200.0] * 5
    positions = read_table(tmp_path / "tr_positions.csv")
    assert len(positions) == 10 and positions["frame"].tolist()[:2] == ["T0", "T1"]
    assert main(["measure", str(tmp_path), "-p", "tracking", "--source", "seg", "-q",
                 "-o", str(tmp_path / "m.csv")]) == 0
    assert main(["tracks-export", str(tmp_path / "m.csv")]) == 0
    assert read_table(tmp_path / "m_wide.csv").shape == (5, 5)
    capsys.readouterr()
    assert main(["measure", str(tmp_path), "-p", "basic", "--source", "seg", "-q", "-o", str(tmp_path / "b.csv")]) == 0
    assert main(["tracks-export", str(tmp_path / "b.csv")]) == 2
    assert "run the 'tracking' plugin" in capsys.readouterr().err
