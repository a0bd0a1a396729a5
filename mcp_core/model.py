"""The multi-class CellposeSAM model: cellpose 4's ``CPSAM`` network with a wider readout.

Output channels, in this order (the one place it is stated)::

    0 .. K-1   class logits, class 0 = background ("unassigned")
    K, K+1     flow Y, flow X
    K+2        cell probability (logit)

so ``y[:, -3:]`` is exactly what an upstream 3-channel model outputs and ``y[:, :-3]`` are the
class logits (the same convention as upstream ``cellpose.train``). A model with no classes has
``nout = 3`` and is an ordinary cellpose 4 model.

Architectures:

``sam_vitl``
    Upstream ``cellpose.vit.CPSAM`` unchanged (SAM ViT-L encoder, patch 8, 256-pixel tiles).
``tiny``
    The same ``CPSAM`` class around a small SAM ``ImageEncoderViT`` (about 0.5M parameters,
    global attention), randomly initialised.
``unet``
    :class:`mcp_core.unet.UNet`, a small residual U-Net (about 0.5M parameters) with the same
    output channels, randomly initialised; not a cellpose 4 network, so upstream cellpose cannot
    open its files (the sidecar records its widths and tile size).

Weights of ``cpsam``/``cpsam_v2`` come from cellpose's own cache folder
(``CELLPOSE_LOCAL_MODELS_PATH``, default ``~/.cellpose/models``); nothing is downloaded unless
asked for. A saved model is a cellpose-style ``state_dict`` file plus a JSON sidecar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from cellpose.vit import CPSAM, BaseModel
from segment_anything.modeling.image_encoder import ImageEncoderViT
from torch import nn
from torch.nn import functional as F

from .atomic import atomic_write, atomic_write_text
from .catalog import PRETRAINED, pretrained_path, read_sidecar, sidecar_path
from .digest import sha256_of
from .errors import ModelError, ParameterError
from .labels import default_color
from .unet import UNet

#: Number of non-class output channels (flow Y, flow X, cell probability), always last.
N_SEG_CHANNELS = 3
SIDECAR_FORMAT = "multicellpose-model"

ARCH_VITL: dict[str, Any] = {"name": "sam_vitl", "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0,
                             "out_chans": 256, "ps": 8, "bsize": 256, "rdrop": 0.4}
ARCH_TINY: dict[str, Any] = {"name": "tiny", "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 4.0,
                             "out_chans": 64, "ps": 8, "bsize": 256, "rdrop": 0.0}
ARCH_UNET: dict[str, Any] = {"name": "unet", "nbase": [16, 32, 64, 128], "ps": 1, "bsize": 128}
#: Bases built with random weights, by name.
SCRATCH_ARCHS = {"tiny": ARCH_TINY, "unet": ARCH_UNET}


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# --------------------------------------------------------------------------------------------- network
def build_network(arch: dict[str, Any], nout: int) -> CPSAM | UNet:
    """An untrained network of architecture *arch* with *nout* output channels.

    ``sam_vitl`` is upstream's ``CPSAM`` constructor as is; ``unet`` is :class:`mcp_core.unet.UNet`;
    any other architecture builds the ``CPSAM`` class around a smaller SAM ``ImageEncoderViT`` made
    for ``bsize`` tiles and global attention, then sets the readout exactly as ``CPSAM.__init__`` does.
    """
    if arch["name"] == "unet":
        return UNet(arch["nbase"], nout)
    ps, bsize = int(arch["ps"]), int(arch["bsize"])
    if arch["name"] == "sam_vitl":
        net = CPSAM(ps=ps, nout=nout, bsize=ARCH_VITL["bsize"], rdrop=float(arch.get("rdrop", 0.4)))
        if bsize != ARCH_VITL["bsize"]:  # upstream subsamples SAM's 64x64 grid; other sizes come from resize_tiles
            net.encoder.pos_embed = nn.Parameter(torch.zeros(1, bsize // ps, bsize // ps, int(arch["embed_dim"])))
        return net
    if bsize % ps:
        raise ParameterError(f"Tile size {bsize} must be a multiple of the patch size {ps}.")
    net = CPSAM.__new__(CPSAM)
    BaseModel.__init__(net, dtype=torch.float32)
    net.rdrop = float(arch.get("rdrop", 0.0))
    net.backbone = "sam_vitl"  # what cellpose's code checks: same CPSAM forward and tiling
    net.encoder = ImageEncoderViT(
        img_size=bsize, patch_size=ps, in_chans=3, embed_dim=int(arch["embed_dim"]), depth=int(arch["depth"]),
        num_heads=int(arch["num_heads"]), mlp_ratio=float(arch["mlp_ratio"]), out_chans=int(arch["out_chans"]),
        qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=0,
    )
    net.out = nn.Conv2d(int(arch["out_chans"]), nout * ps**2, kernel_size=1)
    net.W2 = nn.Parameter(torch.eye(nout * ps**2).reshape(nout * ps**2, nout, ps, ps), requires_grad=False)
    net.nout = nout
    net.ps = ps
    return net


def architecture_of(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read the architecture (encoder size, patch, tile size, outputs) off a CPSAM or U-Net state dict.

    A U-Net's tile size is not in its weights: :data:`ARCH_UNET`'s is returned (the sidecar records
    the one it was trained with).

    Raises
    ------
    ModelError
        When the state dict is neither a cellpose 4 (CPSAM) network nor a :class:`~mcp_core.unet.UNet`.
    """
    if "down.0.conv1.weight" in state_dict:
        try:
            nbase = [int(state_dict[f"down.{i}.conv1.weight"].shape[0]) for i in range(len(state_dict))
                     if f"down.{i}.conv1.weight" in state_dict]
            return {**ARCH_UNET, "nbase": nbase, "nout": int(state_dict["out.weight"].shape[0])}
        except KeyError as exc:
            raise ModelError(f"Not a complete U-Net: missing entry {exc}.") from exc
    try:
        proj = state_dict["encoder.patch_embed.proj.weight"]
        embed_dim, ps = int(proj.shape[0]), int(proj.shape[-1])
        depth = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.blocks."))
        head_dim = int(state_dict["encoder.blocks.0.attn.rel_pos_h"].shape[1])
        mlp = int(state_dict["encoder.blocks.0.mlp.lin1.weight"].shape[0])
        out_chans = int(state_dict["encoder.neck.0.weight"].shape[0])
        bsize = int(state_dict["encoder.pos_embed"].shape[1]) * ps
        nout = int(state_dict["out.weight"].shape[0]) // ps**2
    except (KeyError, ValueError, IndexError) as exc:
        raise ModelError(f"Not a cellpose 4 (CPSAM) network: missing or odd entry {exc}.") from exc
    if "W2" not in state_dict:
        raise ModelError("Not a cellpose 4 (CPSAM) network: it has no 'W2' entry (cellpose 3 models do not work).")
    vitl = embed_dim == ARCH_VITL["embed_dim"] and depth == ARCH_VITL["depth"] and out_chans == ARCH_VITL["out_chans"]
    base = ARCH_VITL if vitl else ARCH_TINY
    arch = {"name": base["name"] if vitl or _same_size(base, embed_dim, depth, out_chans) else "custom",
            "embed_dim": embed_dim, "depth": depth, "num_heads": embed_dim // head_dim, "mlp_ratio": mlp / embed_dim,
            "out_chans": out_chans, "ps": ps, "bsize": bsize, "rdrop": base["rdrop"]}
    return {**arch, "nout": nout}


def _same_size(arch: dict, embed_dim: int, depth: int, out_chans: int) -> bool:
    return (arch["embed_dim"], arch["depth"], arch["out_chans"]) == (embed_dim, depth, out_chans)


def rehead(state_dict: dict[str, torch.Tensor], ps: int, old_classes: Sequence[str], new_classes: Sequence[str]
           ) -> dict[str, torch.Tensor]:
    """Re-shape a state dict's readout from ``old_classes`` to ``new_classes`` class channels.

    Flow and cell-probability channels are kept. A class channel whose name exists in the old
    model keeps its weights; a new one starts from the cell-probability readout (background
    from its negative), so a fresh head predicts foreground where the base model does.
    """
    k_old = len(old_classes) if len(old_classes) > 1 else 0
    k_new = len(new_classes) if len(new_classes) > 1 else 0
    w, b = state_dict["out.weight"], state_dict["out.bias"]
    w = w.reshape(k_old + N_SEG_CHANNELS, ps**2, *w.shape[1:])
    b = b.reshape(k_old + N_SEG_CHANNELS, ps**2)
    new_w = [w[-N_SEG_CHANNELS:]]
    new_b = [b[-N_SEG_CHANNELS:]]
    cls_w, cls_b = [], []
    old_index = {name: i for i, name in enumerate(old_classes)} if k_old else {}
    for j, name in enumerate(new_classes[:k_new] if k_new else []):
        i = old_index.get(name, 0 if j == 0 and k_old else None)
        if i is not None:
            cls_w.append(w[i])
            cls_b.append(b[i])
        else:
            sign = -1.0 if j == 0 else 1.0
            cls_w.append(sign * w[-1])
            cls_b.append(sign * b[-1])
    out = dict(state_dict)
    nout = k_new + N_SEG_CHANNELS
    out["out.weight"] = torch.cat([*(x[None] for x in cls_w), *new_w]).reshape(nout * ps**2, *w.shape[2:]).clone()
    out["out.bias"] = torch.cat([*(x[None] for x in cls_b), *new_b]).reshape(nout * ps**2).clone()
    if "W2" in state_dict:
        out["W2"] = torch.eye(nout * ps**2).reshape(nout * ps**2, nout, ps, ps)
    return out


def resize_tiles(state_dict: dict[str, torch.Tensor], ps: int, bsize: int, rel_pos: bool) -> dict[str, torch.Tensor]:
    """Resample a state dict's position embeddings to ``bsize`` tiles.

    The absolute embedding is resampled bicubically (as SAM does for other image sizes). With
    *rel_pos* the relative embeddings, whose length a small encoder ties to its tile size, are
    resampled linearly (as SAM's ``get_rel_pos`` does on the fly); ViT-L keeps SAM's own lengths.
    """
    pos = state_dict["encoder.pos_embed"]
    n = bsize // ps
    if pos.shape[1] == n:
        return state_dict
    out = dict(state_dict)
    out["encoder.pos_embed"] = F.interpolate(pos.permute(0, 3, 1, 2), size=(n, n), mode="bicubic",
                                             align_corners=False).permute(0, 2, 3, 1).contiguous()
    if rel_pos:
        for key, table in state_dict.items():
            if key.endswith((".attn.rel_pos_h", ".attn.rel_pos_w")) and table.shape[0] != 2 * n - 1:
                out[key] = F.interpolate(table.T[None], size=2 * n - 1, mode="linear")[0].T.contiguous()
    return out


# ----------------------------------------------------------------------------------------------- model
@dataclasses.dataclass
class MultiClassModel:
    """A CPSAM network with class channels, its class names and what the sidecar records.

    Attributes
    ----------
    net
        The ``cellpose.vit.CPSAM`` network (``nout = n_classes + 3``).
    class_names, class_colors
        Per class channel; index 0 is background ("unassigned"). Empty names = no class head.
    architecture
        Encoder sizes, patch ``ps`` and tile size ``bsize`` (see :data:`ARCH_VITL`).
    meta
        Everything else the sidecar holds (base model, training parameters, data hashes, metrics).
    """

    net: CPSAM | UNet
    class_names: list[str]
    class_colors: list[str]
    architecture: dict[str, Any]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Class channels K (background included); 0 for a plain 3-channel model."""
        return self.net.nout - N_SEG_CHANNELS

    @property
    def bsize(self) -> int:
        """Tile size the network's position embedding is made for (a U-Net's: the one it was trained with)."""
        if isinstance(self.net, UNet):
            return int(self.architecture["bsize"])
        return int(self.net.encoder.pos_embed.shape[1]) * int(self.net.ps)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def diameter(self) -> float:
        """Mean object diameter of the training labels (pixels)."""
        return float(self.net.diam_labels.item())

    @property
    def diam_mean(self) -> float:
        """Object diameter the network works at; images are resized by ``diam_mean / diameter``."""
        return float(self.net.diam_mean.item())

    def to(self, device: str | torch.device) -> MultiClassModel:
        self.net.to(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Float32 CPU state dict with any LoRA adapters merged in (what gets saved)."""
        from .finetune import merged_state_dict

        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in merged_state_dict(self.net).items()}

    def sidecar(self) -> dict[str, Any]:
        """The JSON sidecar contents."""
        return {
            "format": SIDECAR_FORMAT,
            "format_version": 1,
            "architecture": {**self.architecture, "nout": self.net.nout, "bsize": self.bsize},
            "channel_order": [*(f"class:{n}" for n in (self.class_names if self.n_classes else [])),
                              "flow_y", "flow_x", "cellprob"],
            "class_names": list(self.class_names) if self.n_classes else [],
            "class_colors": list(self.class_colors) if self.n_classes else [],
            "diameter": self.diameter,
            "diam_mean": self.diam_mean,
            "versions": _versions(),
            **{k: v for k, v in self.meta.items() if k not in {"architecture", "class_names", "class_colors"}},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state dict (``torch.save``, float32, LoRA merged) and the JSON sidecar, atomically.

        A model with no classes loads in upstream ``cellpose.models.CellposeModel(pretrained_model=path)``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            torch.save(self.state_dict(), fh)
        side = self.sidecar()
        side["weights_sha256"] = sha256_of(path)
        side["saved"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(sidecar_path(path), json.dumps(_jsonable(side), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> MultiClassModel:
        """Load a model file (ours with its sidecar, or an upstream cellpose 4 model without one).

        Raises
        ------
        ModelError
            When the file is missing, unreadable or not a cellpose 4 network, or the sidecar
            disagrees with the weights.
        """
        path = Path(path)
        sd, arch = read_weights(path)
        meta: dict[str, Any] = {}
        side = sidecar_path(path)
        if side.is_file():
            try:
                meta = json.loads(side.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(f"The sidecar {side} of {path.name} is not valid JSON: {exc}.") from exc
        names = list(meta.get("class_names") or [])
        k = arch["nout"] - N_SEG_CHANNELS
        if k and len(names) != k:
            if names:
                raise ModelError(f"{side} names {len(names)} classes but {path.name} has {k} class channels.")
            names = ["unassigned", *(f"class {i}" for i in range(1, k))]
        colors = list(meta.get("class_colors") or [])
        colors += [default_color(i) for i in range(len(colors), len(names))]
        recorded = meta.get("architecture") or {}
        if arch["name"] == "unet":
            arch["bsize"] = int(recorded.get("bsize", arch["bsize"]))
        else:
            arch["rdrop"] = recorded.get("rdrop", arch["rdrop"])
        net = build_network(arch, arch["nout"])
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{path} does not match its architecture {arch['name']}: {exc}.") from exc
        keep = {k2: v for k2, v in meta.items() if k2 not in {"format", "format_version", "channel_order", "diameter",
                                                                "diam_mean", "versions", "weights_sha256", "saved"}}
        keep.setdefault("source", str(path))
        model = cls(net, names, colors[: len(names)], _arch_fields(arch), keep)
        return model.to(device or default_device())


def build_model(base: str | os.PathLike = "cpsam", class_names: Sequence[str] = (), class_colors: Sequence[str] = (),
                device: str | torch.device | None = None, pretrained: bool = True, bsize: int | None = None,
                download: bool = False, seed: int = 0) -> MultiClassModel:
    """A multi-class model from a base, with one class channel per class name.

    Parameters
    ----------
    base
        ``"cpsam"`` / ``"cpsam_v2"`` (cellpose's pretrained weights), ``"tiny"`` (small random
        ViT encoder), ``"unet"`` (small random U-Net), or the path of a model file (ours or upstream
        cellpose 4).
    class_names
        Class names, index 0 being background/"unassigned". Fewer than two names: no class
        head (a 3-channel cellpose model).
    class_colors
        ``#rrggbb`` per class (defaults fill in).
    device
        Torch device; CUDA when available by default.
    pretrained
        ``False`` builds the ``cpsam`` architecture with random weights (benchmarks, tests).
    bsize
        Tile size; the position embedding is resampled when it differs from the base's.
    download
        Let cellpose download missing pretrained weights.
    seed
        Seed of the random initialisation (``tiny``, ``unet`` and ``pretrained=False``).

    Raises
    ------
    ModelError
        Missing weights (the message says where they were looked for and how to provide
        them), unreadable files, or an unknown base.
    """
    names = list(class_names) if len(class_names) > 1 else []
    colors = list(class_colors)[: len(names)]
    colors += [default_color(i) for i in range(len(colors), len(names))]
    base_s = str(base)
    with _seeded(seed):
        if base_s in SCRATCH_ARCHS or (base_s in PRETRAINED and not pretrained):
            arch = dict(SCRATCH_ARCHS.get(base_s, ARCH_VITL))
            if bsize:
                arch["bsize"] = int(bsize)
            old_names: list[str] = []
            net = build_network(arch, N_SEG_CHANNELS)
            sd = net.state_dict()
            meta: dict[str, Any] = {"base_model": base_s, "pretrained": False}
        elif base_s in PRETRAINED:
            path = pretrained_path(base_s, download=download)
            sd, arch = read_weights(path)
            old_names, meta = [], {"base_model": base_s, "base_weights": str(path)}
        else:
            path = Path(base_s)
            if not path.is_file():
                raise ModelError(f"Unknown base model {base_s!r}: not one of {', '.join([*PRETRAINED, *SCRATCH_ARCHS])}, "
                                 f"and no file {path}.")
            loaded = MultiClassModel.load(path, device="cpu")
            sd, arch = loaded.net.state_dict(), {**loaded.architecture}
            old_names = loaded.class_names if loaded.n_classes else []
            meta = {"base_model": str(path), "base_meta": {k: loaded.meta.get(k) for k in ("base_model", "training")
                                                          if k in loaded.meta}}
        ps = int(arch["ps"])
        target_bsize = int(bsize or arch["bsize"])
        if target_bsize % ps:
            raise ParameterError(f"Tile size bsize={target_bsize} must be a multiple of the patch size {ps}.")
        step = 2 ** (len(arch["nbase"]) - 1) if arch["name"] == "unet" else 1
        if target_bsize % step:
            raise ParameterError(f"Tile size bsize={target_bsize} must be a multiple of {step} for this U-Net.")
        if arch["name"] != "unet":
            sd = resize_tiles(sd, ps, target_bsize, rel_pos=arch["name"] != "sam_vitl")
        sd = rehead(sd, ps, old_names, names)
        arch = {**_arch_fields(arch), "bsize": target_bsize}
        net = build_network(arch, len(names) + N_SEG_CHANNELS if names else N_SEG_CHANNELS)
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"The weights of base model {base_s!r} do not fit its architecture: {exc}.") from exc
    return MultiClassModel(net, names, colors, arch, meta).to(device or default_device())


def _arch_fields(arch: dict[str, Any]) -> dict[str, Any]:
    """The fields of an architecture record (its family's keys; ``nout`` is the network's own)."""
    family = ARCH_UNET if arch["name"] == "unet" else ARCH_VITL
    return {key: arch[key] for key in family} | {"name": arch["name"]}


def read_weights(path: str | os.PathLike, mmap: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of a model file (``weights_only``: nothing in it can run) and its architecture.

    Parameters
    ----------
    mmap
        Map the tensors instead of reading them (enough to inspect a file).

    Raises
    ------
    ModelError
        When the file is missing, unreadable, not a state dict, or not a cellpose 4 network.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        raise ModelError(f"{path} is not a readable model file: {exc}.") from exc
    if not isinstance(sd, dict):
        raise ModelError(f"{path} does not hold a state dict.")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    try:
        return sd, architecture_of(sd)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for a block, restoring its state afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def upstream_model(path: str | os.PathLike, device: str | torch.device | None = None):
    """Open a 3-channel (or any) model file in upstream ``cellpose.models.CellposeModel``.

    For the ViT-L architecture this is exactly ``CellposeModel(pretrained_model=path)``.
    Upstream's constructor always builds ViT-L (``CPSAM()``), so for a smaller encoder (``tiny``)
    the ``CPSAM`` class it calls is swapped, during construction only, for one that builds the
    file's architecture; reading the file (``load_model`` with its cellpose-4 check) and
    ``eval`` remain upstream's own code.
    """
    from cellpose import models as cp_models

    _, arch = read_weights(path, mmap=True)
    if arch["name"] == "unet":
        raise ModelError(f"{path} is a U-Net: upstream cellpose 4 runs only its ViT (CPSAM) networks.")
    kwargs = {"pretrained_model": str(path), "use_bfloat16": False,
              "device": torch.device(device) if device else default_device()}
    if arch["name"] == "sam_vitl":
        return cp_models.CellposeModel(**kwargs)

    def same_architecture(*_args, dtype=torch.float32, **_kw) -> CPSAM:
        return build_network(arch, arch["nout"]).to(dtype)

    with mock.patch.object(cp_models, "CPSAM", same_architecture):
        return cp_models.CellposeModel(**kwargs)


def inspect_model(path: str | os.PathLike) -> dict[str, Any]:
    """Check a model file without building its network; returns its sidecar (made up when absent).

    Raises
    ------
    ModelError
        When the file is missing, unreadable, not a cellpose 4 network, or its sidecar names a
        different number of classes than it has channels.
    """
    path = Path(path)
    _, arch = read_weights(path, mmap=True)
    side = read_sidecar(path)
    k = arch["nout"] - N_SEG_CHANNELS
    names = list(side.get("class_names") or [])
    if k and names and len(names) != k:
        raise ModelError(f"{sidecar_path(path)} names {len(names)} classes but {path.name} has {k} class channels.")
    if k and not names:
        names = ["unassigned", *(f"class {i}" for i in range(1, k))]
    colors = list(side.get("class_colors") or [])[: len(names)]
    colors += [default_color(i) for i in range(len(colors), len(names))]
    return {**side, "format": SIDECAR_FORMAT, "architecture": {**side.get("architecture", {}), **arch},
            "class_names": names, "class_colors": colors}


def open_model(spec: str | os.PathLike, device: str | torch.device | None = None) -> MultiClassModel:
    """A model ready to segment: ``"cpsam"``/``"cpsam_v2"`` (pretrained, no classes) or a model file.

    Raises
    ------
    ModelError
        For ``"tiny"`` (an untrained architecture), missing weights or an unreadable file.
    """
    name = str(spec)
    if name in PRETRAINED:
        return build_model(name, device=device)
    if name in SCRATCH_ARCHS:
        raise ModelError(f"{name!r} is an untrained architecture for training; train it first, then segment with the result.")
    return MultiClassModel.load(name, device=device)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("cellpose", "multicellpose"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, tuples, paths converted)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
