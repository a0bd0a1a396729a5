"""LoRA and unfreeze-N open exactly the parameters they should; merging LoRA changes nothing but the file layout."""

from __future__ import annotations

import pytest
import torch

from mcp_core.errors import ParameterError
from mcp_core.finetune import HEAD_PREFIXES, LoRALinear, merge_lora, merged_state_dict, select_trainable
from mcp_core.model import MultiClassModel, build_model

NAMES = ["unassigned", "a", "b"]
FIXED = {"W2", "diam_labels", "diam_mean", "encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias"}


def _count(params) -> int:
    return sum(p.numel() for p in params)


def _head(net) -> int:
    return _count(p for n, p in net.named_parameters() if n.startswith(HEAD_PREFIXES))


def _trainable_names(net) -> set[str]:
    return {n for n, p in net.named_parameters() if p.requires_grad}


def test_full_training_opens_everything_cellpose_trains():
    net = build_model("tiny", NAMES, device="cpu").net
    params = select_trainable(net)
    assert _count(params) == _count(p for n, p in net.named_parameters() if n not in FIXED)
    assert not _trainable_names(net) & FIXED


@pytest.mark.parametrize("blocks", [1, 3])
def test_unfreeze_last_blocks_opens_only_those_and_the_head(blocks):
    net = build_model("tiny", NAMES, device="cpu").net
    depth = len(net.encoder.blocks)
    params = select_trainable(net, "last_n", blocks)
    in_blocks = _count(p for i in range(depth - blocks, depth) for p in net.encoder.blocks[i].parameters())
    assert _count(params) == in_blocks + _head(net)
    assert all(n.startswith(HEAD_PREFIXES) or any(n.startswith(f"encoder.blocks.{i}.") for i in range(depth - blocks, depth))
               for n in _trainable_names(net))
    assert not any(p.requires_grad for p in net.encoder.blocks[0].parameters())


@pytest.mark.parametrize("blocks,rank", [(2, 4), (4, 8)])
def test_lora_opens_only_adapters_on_the_last_blocks_attention_and_the_head(blocks, rank):
    net = build_model("tiny", NAMES, device="cpu").net
    depth, dim = len(net.encoder.blocks), net.encoder.blocks[0].attn.proj.in_features
    params = select_trainable(net, "lora", blocks, rank)
    # qkv: A (r x d) + B (3d x r); proj: A (r x d) + B (d x r)
    per_block = rank * dim + 3 * dim * rank + rank * dim + dim * rank
    assert _count(params) == blocks * per_block + _head(net)
    adapters = {n for n in _trainable_names(net) if ".lora_" in n}
    assert len(adapters) == 4 * blocks
    assert all(int(n.split(".")[2]) >= depth - blocks and ".attn." in n for n in adapters)
    assert not any(p.requires_grad for n, p in net.named_parameters() if ".base." in n)


def test_lora_starts_as_identity_and_merges_into_plain_weights(tmp_path):
    model = build_model("tiny", NAMES, device="cpu", seed=2)
    net = model.net.eval()
    x = torch.randn(1, 3, 256, 256)
    before = net(x)[0].detach()
    select_trainable(net, "lora", 2, 4)
    assert torch.allclose(net(x)[0], before, atol=1e-6)  # B = 0 at the start
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_b.normal_(0, 0.05)
    adapted = net(x)[0].detach()
    assert not torch.allclose(adapted, before, atol=1e-4)
    sd = merged_state_dict(net)
    assert not any("lora_" in k or ".base." in k for k in sd)
    path = model.save(tmp_path / "lora.pth")  # saving merges, the file is a plain CPSAM state dict
    reloaded = MultiClassModel.load(path, device="cpu").net.eval()
    assert torch.allclose(reloaded(x)[0], adapted, atol=1e-4)
    assert merge_lora(net) == 4
    assert torch.allclose(net(x)[0], adapted, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"mode": "lora", "blocks": 9}, {"mode": "last_n", "blocks": 5}, {"mode": "lora", "blocks": 0}])
def test_block_counts_beyond_the_encoder_are_refused(kwargs):
    net = build_model("tiny", NAMES, device="cpu").net
    with pytest.raises(ParameterError, match="encoder has 4 blocks"):
        select_trainable(net, **kwargs)
