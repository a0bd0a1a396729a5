"""Training artifacts beside a model, as the original MultiCellPose wrote them for users' scripts.

``models/nuclei_v1.pth`` gets ``models/nuclei_v1_train_losses.npy`` (the mean training loss of
each epoch, float64) and ``models/nuclei_v1_meta.json`` (model name, path, number of training
and test frames, epochs, state). Both are derived from the model's JSON sidecar, which stays the
full record.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_text
from .catalog import read_sidecar, sidecar_path


def artifact_paths(model_path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<model>_train_losses.npy, <model>_meta.json)`` beside the model file."""
    p = Path(model_path)
    stem = p.stem if p.suffix in (".pth", ".pt") else p.name
    return p.with_name(f"{stem}_train_losses.npy"), p.with_name(f"{stem}_meta.json")


def write_training_artifacts(model_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the losses array and the meta JSON of a saved model from its sidecar, atomically.

    Returns
    -------
    tuple of Path
        The losses file and the meta file.
    """
    side = read_sidecar(model_path)
    losses_path, meta_path = artifact_paths(model_path)
    losses = np.asarray(side.get("losses", {}).get("train", []), np.float64)
    buf = io.BytesIO()
    np.save(buf, losses, allow_pickle=False)
    atomic_write_bytes(losses_path, buf.getvalue())
    data = side.get("data", {})
    meta = {"model_name": losses_path.name[: -len("_train_losses.npy")], "save_path": str(Path(model_path)),
            "n_train": len(data.get("train", [])), "n_test": len(data.get("test", [])),
            "epochs_done": side.get("epochs_done", len(losses)), "state": side.get("state", ""),
            "class_names": side.get("class_names", []), "sidecar": sidecar_path(model_path).name}
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return losses_path, meta_path
