"""The model picker tells finished, cancelled and barely trained models apart (state, epochs, AP@0.5)."""

from __future__ import annotations

import json

from mcp_app.model_picker import model_label
from mcp_core.catalog import ModelCatalog


def sidecar(folder, name: str, **fields) -> None:
    (folder / f"{name}.pth").write_bytes(b"")
    (folder / f"{name}.json").write_text(json.dumps({"class_names": ["unassigned", "cell"], **fields}))


def test_labels_from_sidecars(tmp_path):
    sidecar(tmp_path, "full", state="done", epochs_done=100, training={"epochs": 100}, metrics={"ap50": 0.8125})
    sidecar(tmp_path, "stopped", state="cancelled", epochs_done=3, training={"epochs": 100}, metrics={"ap50": 0.0})
    sidecar(tmp_path, "one", state="done", epochs_done=1, training={"epochs": 1})
    sidecar(tmp_path, "running", state="training", epochs_done=7, training={"epochs": 50})
    sidecar(tmp_path, "odd", state=["x"], epochs_done="many", training="none")  # read, never trusted
    labels = {m.name: model_label(m) for m in ModelCatalog(tmp_path).list() if m.scope == "user"}
    assert labels == {
        "full": "full (user) · finished · 100/100 epochs · AP@0.5 0.812",
        "stopped": "stopped (user) · cancelled · 3/100 epochs · AP@0.5 0.000",
        "one": "one (user) · finished · 1/1 epochs",
        "running": "running (user) · being trained · 7/50 epochs",
        "odd": "odd (user)",
    }
