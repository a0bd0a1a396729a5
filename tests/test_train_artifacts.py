"""``<model>_train_losses.npy`` and ``<model>_meta.json`` beside a model, from its sidecar, as the original had."""

from __future__ import annotations

import json

import numpy as np

from mcp_core.catalog import sidecar_path
from mcp_core.params import TrainParams
from mcp_core.synthetic import write_demo_project
from mcp_core.train import train
from mcp_core.train_artifacts import artifact_paths, write_training_artifacts


def test_artifacts_from_a_sidecar(tmp_path):
    model = tmp_path / "nuclei_v1.pth"
    model.write_bytes(b"weights")
    sidecar_path(model).write_text(json.dumps({
        "losses": {"train": [0.9, 0.5, 0.25], "test": [None, 0.6, 0.3]}, "state": "done", "epochs_done": 3,
        "class_names": ["round", "long"],
        "data": {"train": [{"file": "a.tif"}, {"file": "b.tif"}, {"file": "c.tif"}], "test": [{"file": "d.tif"}]}}))
    losses_path, meta_path = write_training_artifacts(model)
    assert (losses_path, meta_path) == (tmp_path / "nuclei_v1_train_losses.npy", tmp_path / "nuclei_v1_meta.json")
    losses = np.load(losses_path, allow_pickle=False)
    assert losses.dtype == np.float64 and losses.tolist() == [0.9, 0.5, 0.25]
    assert json.loads(meta_path.read_text()) == {
        "model_name": "nuclei_v1", "save_path": str(model), "n_train": 3, "n_test": 1, "epochs_done": 3,
        "state": "done", "class_names": ["round", "long"], "sidecar": "nuclei_v1.json"}
    assert artifact_paths(tmp_path / "plain") == (tmp_path / "plain_train_losses.npy", tmp_path / "plain_meta.json")


def test_training_writes_them_beside_the_model(tmp_path):
    write_demo_project(tmp_path / "d", n_images=2, n_labelled=2, shape=(96, 96))
    result = train(tmp_path / "d", TrainParams(base_model="tiny", nimg_per_epoch=2, batch_size=2, epochs=2,
                                               save_path=str(tmp_path / "m.pth")))
    losses = np.load(tmp_path / "m_train_losses.npy", allow_pickle=False)
    assert losses.tolist() == result.train_losses and len(losses) == 2
    meta = json.loads((tmp_path / "m_meta.json").read_text())
    assert (meta["model_name"], meta["n_train"], meta["epochs_done"], meta["state"]) == ("m", result.n_train, 2, "done")
    assert sidecar_path(tmp_path / "m.pth").is_file()  # the sidecar stays
