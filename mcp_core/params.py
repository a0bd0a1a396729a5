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
#: Which weights a training run changes (:func:`mcp_core.finetune.select_trainable`).
FinetuneMode = Literal["all", "lora", "last_n"]


#: Where a field is shown in a parameter dialog: ``basic`` (always), ``advanced`` (folded away; the default of a
#: field without a group) or ``hidden`` (filled by the surface itself, e.g. class names from the project).
Group = Literal["basic", "advanced", "hidden"]


def _in(group: Group) -> dict[str, Any]:
    return {"json_schema_extra": {"group": group}}


@pdataclass
class SegmentParams:
    """How to segment. ``diameter=0`` means the model's own; ``niter=0`` lets cellpose choose."""

    model: str = Field("cpsam", title="Model", **_in("hidden"))
    diameter: float = Field(0.0, ge=0, le=1000, title="Diameter (0 = the model's own)",
                            description="Object diameter in pixels; 0 uses the model's own.", **_in("basic"))
    flow_threshold: float = Field(0.4, ge=0, le=10, title="Flow threshold",
                                  description="Maximum flow error of a kept mask.", **_in("basic"))
    cellprob_threshold: float = Field(0.0, ge=-12, le=12, title="Cell probability threshold",
                                      description="Pixels above this cell probability logit are foreground.",
                                      **_in("basic"))
    min_size: int = Field(15, ge=0, title="Minimum size (pixels)",
                          description="Masks smaller than this many pixels are removed.", **_in("basic"))
    normalize: tuple[float, float] = Field((1.0, 99.0), title="Normalisation percentiles",
                                           description="Lower and upper intensity percentiles mapped to 0 and 1.")
    channels: list[int] | None = Field(None, max_length=3, title="Channels",
                                       description="Image channels fed to the model (up to 3); empty: the model's own.",
                                       **_in("basic"))
    bsize: int | None = Field(None, ge=32, le=2048, title="Tile size",
                              description="Tile size in pixels; empty: the model's own (the size it was trained at).")
    batch_size: int = Field(8, ge=1, le=512, title="Tiles per batch",
                            description="Tiles per forward pass on a GPU (the CPU runs one per pass: faster there).")
    tile_overlap: float = Field(0.1, ge=0, le=0.5, title="Tile overlap", description="Fraction of overlap between tiles.")
    augment: bool = Field(False, title="Test-time augmentation", description="Average over flipped tiles (slower, smoother).")
    niter: int = Field(0, ge=0, le=10000, title="Dynamics iterations",
                       description="Dynamics iterations; 0 chooses from the diameter.")
    return_flows: bool = Field(False, title="Keep flows", description="Return flows and cell probability too.")


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

    model_name: str = Field("my_model", title="Model name", description="Name of the new model file.", **_in("basic"))
    base_model: str = Field("cpsam", title="Base model", description="cpsam, cpsam_v2, unet, tiny, or a model file "
                            "to start from.", **_in("basic"))
    class_names: list[str] = Field(default_factory=lambda: ["background"], title="Class names",
                                   description="Class channels, background first; the classes found in the labels "
                                   "when left at the default.", **_in("hidden"))
    class_colors: list[str] = Field(default_factory=list, title="Class colours", **_in("hidden"))
    epochs: int | None = Field(None, ge=1, le=100000, title="Epochs",
                               description="Passes of 'crops per epoch' random crops.", **_in("basic"))
    batch_size: int = Field(8, ge=1, le=512, title="Batch size", description="Crops per training step.",
                            **_in("basic"))
    bsize: int | None = Field(None, ge=32, le=2048, title="Tile size", description="Crop size in pixels.",
                              **_in("basic"))
    learning_rate: float | None = Field(None, gt=0, le=1, title="Learning rate", description="Peak learning rate.",
                                        **_in("basic"))
    weight_decay: float | None = Field(None, ge=0, le=10, title="Weight decay", description="AdamW weight decay.",
                                       **_in("basic"))
    nimg_per_epoch: int | None = Field(None, ge=0, le=100000, title="Crops per epoch",
                                       description="Random crops per epoch (0 = each training image once).")
    test_ratio: float = Field(0.2, ge=0, lt=1, title="Test fraction",
                              description="Fraction of the labelled frames held out for testing (seeded).",
                              **_in("basic"))
    finetune: FinetuneMode = Field("all", title="Weights trained",
                                   description="all; lora: LoRA adapters on the attention of the last N blocks; "
                                   "last_n: only the last N encoder blocks (the heads always train).", **_in("basic"))
    finetune_blocks: int = Field(4, ge=1, le=64, title="N blocks",
                                 description="The N of 'lora' and 'last_n'.", **_in("basic"))
    lora_rank: int = Field(8, ge=1, le=256, title="LoRA rank", description="Rank of the LoRA adapters.")
    rescale: bool = Field(True, title="Rescale to the model's diameter",
                          description="Resize images to the model's object diameter.")
    scale_range: float = Field(0.5, ge=0, le=2, title="Scale augmentation", description="Random rescaling range around 1.")
    seg_loss_weight: float = Field(1.0, ge=0, title="Segmentation loss weight")
    class_loss_weight: float = Field(1.0, ge=0, title="Class loss weight")
    test_dir: str | None = Field(None, title="Test folder",
                                 description="Folder of labelled test images (instead of a test fraction).")
    min_train_masks: int = Field(5, ge=0, title="Minimum masks per frame",
                                 description="Training frames with fewer masks are skipped.")
    replay_dir: str | None = Field(None, title="Replay folder", description="Earlier training folder to replay.")
    replay_fraction: float = Field(0.0, ge=0, le=1, title="Replay fraction",
                                   description="Replayed crops per epoch, as a fraction of the new ones.")
    seed: int = Field(0, title="Random seed")
    save_path: str | None = Field(None, title="Save to", description="Folder for <model name>.pth and .json, or a "
                                  ".pth file (default ./models).", **_in("hidden"))
    device: str | None = Field(None, title="Device", description="Torch device (default: cuda if available).",
                               **_in("hidden"))
    train_debug_steps: int = Field(0, ge=0, title="Debug steps per epoch",
                                   description="Stop each epoch after N steps (debugging).", **_in("hidden"))
    channels: list[int] | None = Field(None, max_length=3, title="Channels",
                                       description="Image channels fed to the model (up to 3); the first three by default.")


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
    #: A trained model's sidecar ``state``: ``"done"``, ``"cancelled"`` or ``"training"`` ("" when unknown).
    state: str = ""
    #: Epochs trained, and the epochs the training was asked for (0 when unknown).
    epochs_done: int = 0
    epochs: int = 0


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


#: The Python type of a JSON schema ``type`` (for values typed as text: CLI options, form inputs).
PYTHON_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str}


def schema_fields(schema: dict) -> dict[str, dict]:
    """The properties of a JSON schema, each resolved to one plain spec.

    ``$ref`` is replaced by its definition and ``anyOf`` with ``null`` (an optional field) by the
    other branch, with ``"nullable": True``; ``title``, ``default``, ``description`` and ``group``
    are kept. The CLI options (:mod:`mcp_core.schema_cli`) and the app's forms are built from this.
    """
    out = {}
    for name, spec in schema.get("properties", {}).items():
        if "$ref" in spec:
            spec = {**schema.get("$defs", {}).get(spec["$ref"].split("/")[-1], {}), **spec}
        if "anyOf" in spec:
            branches = spec["anyOf"]
            branch = next((b for b in branches if b.get("type") != "null"), {})
            spec = {**branch, **{k: v for k, v in spec.items() if k != "anyOf"},
                    "nullable": any(b.get("type") == "null" for b in branches)}
        out[name] = spec
    return out


def to_dict(obj: Any) -> dict:
    """A parameter or info object as a plain dict."""
    return dataclasses.asdict(obj)
