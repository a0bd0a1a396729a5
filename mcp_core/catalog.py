"""The models a backend offers: cellpose's pretrained weights and the user's model files.

Listing reads only file names and JSON sidecars, so it never imports torch. User models live
in one folder as ``<name>.pth`` + ``<name>.json``; adding a model copies it there after
checking it is a cellpose 4 network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_write, atomic_write_text
from .errors import ModelError
from .params import ModelInfo

#: Pretrained weight files known to cellpose (names in its cache folder).
PRETRAINED = ("cpsam", "cpsam_v2")
#: Architectures that start from random weights (offline, CPU-sized): a small U-Net and a small ViT.
SCRATCH = ("unet", "tiny")
#: The base the app trains when no pretrained weights are on the machine (chosen by benchmarks/hepg2_bench.py).
OFFLINE_BASE = "unet"
MODEL_SUFFIX = ".pth"


def weights_dir() -> Path:
    """Cellpose's model cache folder (``CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``)."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def pretrained_path(name: str, download: bool = False) -> Path:
    """Path of cellpose's pretrained weights *name*, from its cache.

    Parameters
    ----------
    name
        ``"cpsam"`` or ``"cpsam_v2"``.
    download
        Fetch the file through cellpose when it is missing (needs the internet).

    Raises
    ------
    ModelError
        When the file is missing (and not downloaded): the message names the file, the folder
        looked in, and how to provide it.
    """
    path = weights_dir() / name
    if path.is_file() and path.stat().st_size > 0:
        return path
    if download:
        from cellpose import models as cp_models  # imports torch

        try:
            return Path(cp_models.cache_model_path(name))
        except Exception as exc:
            raise ModelError(f"Could not download the {name} weights into {path.parent}: {exc}. {_how_to_provide(name)}") from exc
    raise ModelError(f"The pretrained weights file {name!r} was not found: looked for {path}. {_how_to_provide(name)}")


def _how_to_provide(name: str) -> str:
    return (f"To provide it, copy the file {name!r} from a machine with cellpose into {weights_dir()}, or set "
            f"CELLPOSE_LOCAL_MODELS_PATH to a folder holding it, or fetch it once online with "
            f"`python -c \"from cellpose import models; models.CellposeModel(pretrained_model='{name}')\"`.")


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The JSON sidecar of a model file: ``m.pth`` -> ``m.json``, ``m`` -> ``m.json``."""
    p = Path(model_path)
    return p.with_suffix(".json") if p.suffix in (".pth", ".pt") else p.with_name(p.name + ".json")


def read_sidecar(model_path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of a model file as a dict (empty when there is none or it is unreadable)."""
    try:
        data = json.loads(sidecar_path(model_path).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def safe_name(name: str) -> str:
    """A model name usable as a file name (letters, digits, ``.``, ``_``, ``-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return cleaned or "model"


class ModelCatalog:
    """Pretrained and user models of one backend.

    Parameters
    ----------
    models_dir
        Folder of the user's model files (created when a model is added).
    """

    def __init__(self, models_dir: str | os.PathLike) -> None:
        self.models_dir = Path(models_dir)

    def list(self) -> list[ModelInfo]:
        """Pretrained models (available when their weights are in cellpose's cache) then user models."""
        out = []
        for name in PRETRAINED:
            path = weights_dir() / name
            ok = path.is_file()
            out.append(ModelInfo(name=name, path=str(path), scope="builtin", architecture="sam_vitl", available=ok,
                                 note="" if ok else f"weights not found at {path}"))
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.glob(f"*{MODEL_SUFFIX}")):
                if not path.name.startswith("."):
                    out.append(self.info(path))
        return out

    def info(self, path: str | os.PathLike) -> ModelInfo:
        """What the sidecar of a user model file says."""
        path = Path(path)
        side = read_sidecar(path)
        state = side.get("state") if isinstance(side.get("state"), str) else ""
        note = {"training": "being trained", "cancelled": "training was cancelled (last checkpoint)"}.get(state, "")
        return ModelInfo(name=path.stem, path=str(path), class_names=list(side.get("class_names") or []),
                         class_colors=list(side.get("class_colors") or []), scope="user",
                         architecture=str((side.get("architecture") or {}).get("name", "unknown")),
                         available=state != "training", note=note if side else "no sidecar", metrics=side.get("metrics") or {},
                         state=state, epochs_done=_count(side.get("epochs_done")),
                         epochs=_count(training.get("epochs") if isinstance(training := side.get("training"), dict)
                                       else 0))

    def resolve(self, name: str) -> str:
        """What :func:`mcp_core.model.open_model` needs for a listed model name: a pretrained name or a file path.

        Raises
        ------
        ModelError
            When no model has that name.
        """
        if name in PRETRAINED:
            return name
        path = self.models_dir / f"{name}{MODEL_SUFFIX}"
        if path.is_file():
            return str(path)
        known = [m.name for m in self.list()]
        raise ModelError(f"There is no model named {name!r}; known models: {', '.join(known) or 'none'}.")

    def unique_path(self, name: str) -> Path:
        """``<models>/<name>.pth``, with ``_2``, ``_3``... appended when taken."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        base = safe_name(name)
        path, n = self.models_dir / f"{base}{MODEL_SUFFIX}", 1
        while path.exists() or sidecar_path(path).exists():
            n += 1
            path = self.models_dir / f"{base}_{n}{MODEL_SUFFIX}"
        return path

    def add(self, path: str | os.PathLike, sidecar: dict[str, Any]) -> ModelInfo:
        """Copy a checked model file into the catalog, with *sidecar* (from :func:`mcp_core.model.inspect_model`)."""
        src = Path(path)
        dest = self.unique_path(src.stem)
        with open(src, "rb") as fin, atomic_write(dest) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        atomic_write_text(sidecar_path(dest), json.dumps({**sidecar, "source": str(src.resolve())}, indent=1))
        return self.info(dest)


def _count(value: object) -> int:
    """A non-negative whole number read from a sidecar; 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
