"""bioimage.io export: a tiny model's package validates (bioimageio.spec) and its test passes (bioimageio.core)."""

from __future__ import annotations

import argparse
import zipfile

import numpy as np
import pytest
import yaml

from mcp_core import cli
from mcp_core.bioimage_package import channel_ids, export_bioimageio, scale_range
from mcp_core.errors import ParameterError
from mcp_core.model import build_model

pytest.importorskip("bioimageio.core")


def main(argv: list[str]) -> int:
    """The ``multicellpose`` core subcommands, in-process."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return cli.run(parser.parse_args(argv))


def test_channel_ids_are_identifiers_and_unique():
    assert channel_ids(["class:unassigned", "class:Big cells", "class:big-cells", "flow_y"]) == [
        "class_unassigned", "class_big_cells", "class_big_cells_", "flow_y"]


def test_scaling_maps_percentiles_to_zero_and_one():
    x = np.stack([np.linspace(0, 100, 101 * 101).reshape(101, 101), np.full((101, 101), 7.0)])
    y = scale_range(x)
    assert y[0].min() == pytest.approx(-1 / 98, abs=1e-4) and y[0].max() == pytest.approx(99 / 98, abs=1e-4)
    assert (y[1] == 0).all()  # a constant channel becomes 0, not nan


def test_export_model_command_writes_a_package_that_validates_and_passes_its_test(tmp_path, capsys):
    model_path = build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=5,
                             bsize=128).save(tmp_path / "nuclei.pth")
    out = tmp_path / "nuclei.zip"
    assert main(["export-model", str(model_path), str(out), "--format", "bioimageio", "--author", "A. Biologist"]) == 0
    printed = capsys.readouterr().out
    assert "bioimageio.spec validation: passed; bioimageio.core test on CPU: passed" in printed
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        readme = zf.read("README.md").decode()
    assert {"rdf.yaml", "weights.pt", "cover.png", "README.md", "test_input.npy", "test_output.npy"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["authors"] == [{"name": "A. Biologist"}]
    assert rdf["config"]["multicellpose"]["class_names"] == ["unassigned", "round", "elongated"]
    assert [c for c in rdf["outputs"][0]["axes"][1]["channel_names"]] == [
        "class_unassigned", "class_round", "class_elongated", "flow_y", "flow_x", "cellprob"]
    assert "## Summary" in readme and "## Using this package" in readme
    with pytest.raises(ParameterError, match=r"\.zip"):
        export_bioimageio(model_path, tmp_path / "nuclei.tar")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial package left


def test_model_card_shows_training_scores_and_the_annotation_versions(tmp_path):
    import json

    from mcp_core.model_card import card_markdown

    (tmp_path / "m.pth").write_bytes(b"")
    (tmp_path / "m.json").write_text(json.dumps({
        "architecture": {"name": "tiny", "bsize": 128, "ps": 8}, "class_names": ["unassigned", "mitotic"],
        "class_colors": ["#808080", "#e6194b"], "training": {"epochs": 40, "learning_rate": 0.003},
        "losses": {"train": [1.0, 0.5, 0.25], "test": [1.1, None, 0.3]}, "epochs_done": 3,
        "metrics": {"ap50": 0.8125, "class_accuracy": 0.9, "per_class": {
            "mitotic": {"precision": 0.75, "recall": 0.5, "f1": 0.6, "support": 4}}},
        "data": {"digest": "ab" * 32, "train": [{"file": "a.tif", "frame": "", "sha256": "c" * 64,
                                                  "annotation_version": 3}]},
        "versions": {"cellpose": "4.2"}}))
    card = card_markdown(tmp_path / "m.pth")
    assert card.startswith("# m\n") and "mitotic (#e6194b)" in card
    assert "| ap50 | 0.812 |" in card and "| mitotic | 0.750 | 0.500 | 0.600 | 4 |" in card
    assert "| train | a.tif | - | cccccccccccc | 3 |" in card
    assert "Training loss: 1 → 0.5 → 0.25." in card and "Test loss: 1.1 → 0.3." in card
