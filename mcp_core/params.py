"""Parameters and results that cross the Backend seam: plain, serialisable, validated.

The GUI, the CLI, scripts and the server all build these same objects, so defaults live
here and nowhere else. Parameter classes are pydantic dataclasses: constructing one with a
bad value raises a ``pydantic.ValidationError`` naming the field, and ``json_schema(cls)``
gives the schema a form can be built from.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field, TypeAdapter
from pydantic.dataclasses import dataclass as pdataclass

JobKind = Literal["train", "batch"]
JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
EventKind = Literal["progress", "loss", "log", "artifact", "done", "failed", "state"]
ModelScope = Literal["builtin", "user", "shared"]


@pdataclass
class SegmentParams:
    """How to segment. ``diameter=0`` means the model's own; ``niter=0`` lets cellpose choose."""

    model: str = "cpsam"
    diameter: float = Field(0.0, ge=0, le=1000, description="Object diameter in pixels; 0 uses the model's own.")
    flow_threshold: float = Field(0.4, ge=0, le=10, description="Maximum flow error of a kept mask.")
    cellprob_threshold: float = Field(0.0, ge=-12, le=12, description="Pixels above this cell probability logit are foreground.")
    min_size: int = Field(15, ge=0, description="Masks smaller than this many pixels are removed.")
    normalize: tuple[float, float] = Field((1.0, 99.0), description="Lower and upper intensity percentiles mapped to 0 and 1.")
    channels: list[int] | None = Field(None, description="Image channels fed to the model (up to 3); all by default.")
    bsize: int | None = Field(None, ge=32, le=2048, title="Tile size",
                              description="Tile size in pixels; empty: the model's own (the size it was trained at).")
    batch_size: int = Field(8, ge=1, le=512, description="Tiles per forward pass.")
    tile_overlap: float = Field(0.1, ge=0, le=0.5, description="Fraction of overlap between tiles.")
    augment: bool = Field(False, description="Average over flipped tiles (slower, smoother).")
    niter: int = Field(0, ge=0, le=10000, description="Dynamics iterations; 0 chooses from the diameter.")
    return_flows: bool = Field(False, description="Return flows and cell probability too.")


#: Training defaults of a pretrained CellposeSAM base (upstream's fine-tuning recipe): small steps, each image once
#: per epoch (``nimg_per_epoch=0``).
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 100, "bsize": 256, "learning_rate": 1e-5, "weight_decay": 0.1,
                                     "nimg_per_epoch": 0}
#: Training defaults of a network that starts from random weights (``tiny``, or a model trained from one): large
#: steps, small tiles, and a fixed number of random crops per epoch so a folder of 3 images still gets enough steps.
SCRATCH_DEFAULTS: dict[str, Any] = {"epochs": 100, "bsize": 128, "learning_rate": 3e-3, "weight_decay": 1e-4,
                                    "nimg_per_epoch": 16}
#: The fields whose default depends on the base model (``None`` in :class:`TrainParams`).
BASE_DEPENDENT = tuple(FINETUNE_DEFAULTS)


@pdataclass
class TrainParams:
    """How to train. Either ``test_ratio`` or ``test_dir`` defines the test split.

    Fields left ``None`` take the base model's default (:func:`train_defaults`, applied by
    :func:`resolve_train_params` when training starts).
    """

    model_name: str = "my_model"
    base_model: str = "cpsam"
    class_names: list[str] = Field(default_factory=lambda: ["background"])
    class_colors: list[str] = Field(default_factory=list)
    epochs: int | None = Field(None, ge=1, le=100000, description="Passes of nimg_per_epoch crops; the base model's default if unset.")
    batch_size: int = Field(8, ge=1, le=512)
    bsize: int | None = Field(None, ge=32, le=2048, description="Tile size in pixels; the base model's default if unset.")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Peak learning rate; the base model's default if unset.")
    weight_decay: float | None = Field(None, ge=0, le=10, description="AdamW weight decay; the base model's default if unset.")
    nimg_per_epoch: int | None = Field(None, ge=0, le=100000, description="Random crops per epoch (0 = each training "
                                       "image once); the base model's default if unset.")
    rescale: bool = True
    scale_range: float = Field(0.5, ge=0, le=2, description="Random rescaling range around 1.")
    seg_loss_weight: float = Field(1.0, ge=0)
    class_loss_weight: float = Field(1.0, ge=0)
    use_lora: bool = False
    lora_blocks: int = Field(4, ge=0, le=64)
    lora_rank: int = Field(8, ge=1, le=256)
    unfreeze_blocks: int = Field(0, ge=0, le=64, description="Train only the last N encoder blocks (0 = all).")
    test_ratio: float = Field(0.2, ge=0, lt=1)
    test_dir: str | None = None
    min_train_masks: int = Field(5, ge=0)
    replay_dir: str | None = None
    replay_fraction: float = Field(0.0, ge=0, le=1)
    seed: int = 0
    save_path: str | None = None
    device: str | None = None
    train_debug_steps: int = Field(0, ge=0, description="Stop each epoch after N steps (debugging).")
    channels: list[int] | None = Field(None, description="Image channels fed to the model (up to 3); the first three by default.")


def train_defaults(base_model: str, architecture: str | None = None) -> dict[str, Any]:
    """The defaults of the base-dependent training fields (:data:`BASE_DEPENDENT`) for a base model.

    Parameters
    ----------
    base_model
        ``"cpsam"``/``"cpsam_v2"`` (pretrained: fine-tuning defaults), ``"tiny"``/``"unet"`` (random
        weights: from-scratch defaults), or a model file, whose sidecar's architecture decides: a ViT-L file
        (or one without a sidecar) was fine-tuned from CellposeSAM, anything else was trained from
        scratch and keeps its tile size.
    architecture
        The base's architecture name when the caller knows it (e.g. from a model list), instead
        of reading the sidecar.
    """
    from .catalog import PRETRAINED, SCRATCH, read_sidecar

    if base_model in PRETRAINED:
        return dict(FINETUNE_DEFAULTS)
    if base_model in SCRATCH:
        return dict(SCRATCH_DEFAULTS)
    arch = (read_sidecar(base_model).get("architecture") or {}) if architecture is None else {"name": architecture}
    if arch.get("name", "unknown") in ("sam_vitl", "unknown"):  # no sidecar: most likely a fine-tuned CellposeSAM
        return dict(FINETUNE_DEFAULTS)
    return {**SCRATCH_DEFAULTS, **({"bsize": int(arch["bsize"])} if arch.get("bsize") else {})}


def resolve_train_params(params: TrainParams) -> TrainParams:
    """*params* with every base-dependent field left ``None`` set to the base model's default."""
    defaults = train_defaults(params.base_model)
    return dataclasses.replace(params, **{k: v for k, v in defaults.items() if getattr(params, k) is None})


@dataclasses.dataclass
class SegmentResult:
    """Segmentation of one image (or frame)."""

    masks: np.ndarray
    classes: np.ndarray
    class_names: list[str]
    class_map: np.ndarray | None = None
    flows: np.ndarray | None = None
    cellprob: np.ndarray | None = None
    diameter: float = 0.0
    image: str = ""
    frame: str = ""
    class_colors: list[str] = dataclasses.field(default_factory=list)
    #: Per-object scores ``{name: array indexed by mask id}`` (see :mod:`mcp_core.confidence`).
    confidence: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainResult:
    """What a training run produced: the model file, its scores and the loss curves."""

    model_path: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_losses: list[float] = dataclasses.field(default_factory=list)
    test_losses: list[float] = dataclasses.field(default_factory=list)
    epochs_done: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    class_names: list[str] = dataclasses.field(default_factory=list)
    n_train: int = 0
    n_test: int = 0


@dataclasses.dataclass
class ModelInfo:
    """A model a backend can run."""

    name: str
    path: str = ""
    class_names: list[str] = dataclasses.field(default_factory=list)
    class_colors: list[str] = dataclasses.field(default_factory=list)
    scope: ModelScope = "builtin"
    architecture: str = "cpsam"
    available: bool = True
    note: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BackendInfo:
    """What a backend is and runs on."""

    kind: Literal["local", "remote"]
    device: str
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    host: str = "localhost"
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class JobEvent:
    """One numbered event of a job; ``seq`` starts at 1 and has no gaps, so a client can re-attach."""

    seq: int
    job_id: str
    kind: EventKind
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    time: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass
class JobInfo:
    """State of a job."""

    job_id: str
    kind: JobKind
    state: JobState = "queued"
    created: float = dataclasses.field(default_factory=time.time)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""


@dataclasses.dataclass
class Usage:
    """Storage a backend uses for the current user."""

    bytes_used: int = 0
    quota_bytes: int | None = None
    files: int = 0


def json_schema(cls: type) -> dict:
    """JSON schema of a parameter class (types, defaults, bounds, help text)."""
    return TypeAdapter(cls).json_schema()


def to_dict(obj: Any) -> dict:
    """A parameter or info object as a plain dict."""
    return dataclasses.asdict(obj)
