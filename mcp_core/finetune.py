"""What a training run changes: all weights, LoRA adapters on the last blocks, or the last blocks.

* all (default): every parameter cellpose trains (the patch embedding is fixed by ``CPSAM.forward``).
* LoRA: the attention ``qkv`` and ``proj`` layers of the last N encoder blocks get low-rank
  adapters ``W + (alpha / r) * B @ A``; only the adapters and the head (neck and readout) train,
  and saving merges the adapters into ``W`` so the file is a plain CPSAM state dict.
* unfreeze N: the last N encoder blocks and the head train, the rest is frozen.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ParameterError
from .params import FinetuneMode

#: Parameter-name prefixes of the head, trained in every mode (new class channels live there).
HEAD_PREFIXES = ("encoder.neck.", "out.")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    Parameters
    ----------
    base
        The layer adapted; its weights are frozen.
    rank
        Rank ``r`` of the update.
    alpha
        Scale numerator: the update is ``(alpha / r) * B @ A`` (``alpha = r`` by default).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        """The weight update ``scale * B @ A``."""
        return self.scale * (self.lora_b @ self.lora_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded into its weight."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.delta().to(self.base.weight.dtype))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _blocks(net: nn.Module) -> nn.ModuleList:
    return net.encoder.blocks


def _check_blocks(net: nn.Module, n: int) -> int:
    depth = len(_blocks(net))
    if not 1 <= n <= depth:
        raise ParameterError(f"finetune_blocks={n} is out of range: this model's encoder has {depth} blocks.")
    return depth


def add_lora(net: nn.Module, blocks: int, rank: int) -> list[str]:
    """Wrap ``attn.qkv`` and ``attn.proj`` of the last *blocks* encoder blocks in :class:`LoRALinear`.

    Returns
    -------
    list of str
        Names of the wrapped layers.
    """
    depth = _check_blocks(net, blocks)
    wrapped = []
    for i in range(depth - blocks, depth):
        attn = _blocks(net)[i].attn
        for name in ("qkv", "proj"):
            layer = getattr(attn, name)
            if not isinstance(layer, LoRALinear):
                setattr(attn, name, LoRALinear(layer, rank))
            wrapped.append(f"encoder.blocks.{i}.attn.{name}")
    return wrapped


def merge_lora(net: nn.Module) -> int:
    """Replace every :class:`LoRALinear` by its merged ``nn.Linear``, in place; returns how many."""
    found = [(name, mod) for name, mod in net.named_modules() if isinstance(mod, LoRALinear)]
    for name, mod in found:
        parent_name, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent_name), attr, mod.merged())
    return len(found)


def merged_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict *net* would have with its LoRA adapters merged (the network is untouched)."""
    sd = dict(net.state_dict())
    for name, mod in net.named_modules():
        if isinstance(mod, LoRALinear):
            sd.pop(f"{name}.lora_a")
            sd.pop(f"{name}.lora_b")
            weight = sd.pop(f"{name}.base.weight")
            sd[f"{name}.weight"] = (weight + mod.delta().detach().to(weight.dtype))
            if f"{name}.base.bias" in sd:
                sd[f"{name}.bias"] = sd.pop(f"{name}.base.bias")
    return sd


def select_trainable(net: nn.Module, mode: FinetuneMode = "all", blocks: int = 4, rank: int = 8) -> list[nn.Parameter]:
    """Set ``requires_grad`` for a fine-tuning mode and return the trainable parameters.

    Parameters
    ----------
    net
        A CPSAM network (any network for ``mode="all"``).
    mode
        ``"all"``: every weight cellpose trains; ``"lora"``: LoRA adapters of rank *rank* on the
        attention of the last *blocks* encoder blocks (plus the heads); ``"last_n"``: only the last
        *blocks* encoder blocks and the heads.
    blocks, rank
        The N of ``lora`` and ``last_n``; the LoRA rank.

    Raises
    ------
    ParameterError
        When *blocks* is out of range for the encoder, or the network has no ViT encoder.
    """
    use_lora = mode == "lora"
    if mode != "all" and not hasattr(net, "encoder"):
        raise ParameterError("LoRA and training only the last blocks need a ViT encoder; this network trains whole.")
    if use_lora:
        add_lora(net, blocks, rank)
    # Parameters cellpose never trains stay frozen in every mode.
    fixed = {"W2", "diam_labels", "diam_mean", "encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias"}
    if mode == "last_n":
        depth = _check_blocks(net, blocks)
        open_prefixes = (*HEAD_PREFIXES, *(f"encoder.blocks.{i}." for i in range(depth - blocks, depth)))
    elif use_lora:
        open_prefixes = HEAD_PREFIXES
    else:
        open_prefixes = ("",)
    params = []
    for name, p in net.named_parameters():
        train = (name not in fixed and name.startswith(open_prefixes)) or (use_lora and ".lora_" in name)
        if use_lora and ".base." in name:
            train = False
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params
