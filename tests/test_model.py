"""The multi-class CPSAM model: architecture, class channels, files, pretrained weights, upstream cellpose."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mcp_core.catalog import sidecar_path
from mcp_core.errors import ModelError, ParameterError
from mcp_core.finetune import select_trainable
from mcp_core.model import (ARCH_TINY, ARCH_UNET, ARCH_VITL, N_SEG_CHANNELS, MultiClassModel, architecture_of, build_model,
                            build_network, inspect_model, open_model, rehead, upstream_model)
from mcp_core.params import SegmentParams
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample

NAMES = ["unassigned", "round", "elongated"]


def test_tiny_is_small_and_outputs_classes_then_flows_then_cellprob():
    model = build_model("tiny", NAMES, device="cpu")
    n_params = sum(p.numel() for p in model.net.parameters())
    assert 2e5 < n_params < 1.5e6
    assert model.n_classes == 3 and model.net.nout == 3 + N_SEG_CHANNELS
    y = model.net(torch.zeros(2, 3, 256, 256))[0]
    assert y.shape == (2, 6, 256, 256)
    # Class channels start from the cell-probability readout: background from its negative.
    ps2 = model.net.ps ** 2
    w = model.net.out.weight.detach().reshape(6, ps2, -1)
    assert torch.equal(w[1], w[5]) and torch.equal(w[2], w[5]) and torch.equal(w[0], -w[5])


def test_same_seed_same_weights_and_plain_model_without_classes():
    a, b = build_model("tiny", device="cpu", seed=1), build_model("tiny", device="cpu", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    assert a.n_classes == 0 and a.net.nout == 3 and a.class_names == []


def test_vitl_layout_is_upstream_cpsam_exactly():
    """Our ViT-L network has upstream CPSAM's state-dict keys and shapes (built on the meta device: no memory)."""
    from cellpose.vit import CPSAM

    with torch.device("meta"):
        upstream = CPSAM(nout=3).state_dict()
        ours = build_network(ARCH_VITL, 3).state_dict()
        wide = build_network(ARCH_VITL, 6).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in upstream.items()}
    assert architecture_of(wide)["name"] == "sam_vitl" and architecture_of(wide)["nout"] == 6


def test_save_load_round_trip_with_sidecar(tmp_path):
    model = build_model("tiny", NAMES, ["#000000", "#ff0000", "#00ff00"], device="cpu", bsize=128)
    model.meta["metrics"] = {"ap50": 0.5}
    path = model.save(tmp_path / "m.pth")
    side = json.loads(sidecar_path(path).read_text())
    assert side["class_names"] == NAMES and side["class_colors"][1] == "#ff0000"
    assert side["architecture"]["name"] == "tiny" and side["architecture"]["bsize"] == 128
    assert side["channel_order"] == ["class:unassigned", "class:round", "class:elongated", "flow_y", "flow_x", "cellprob"]
    assert side["metrics"] == {"ap50": 0.5} and len(side["weights_sha256"]) == 64 and "cellpose" in side["versions"]
    loaded = MultiClassModel.load(path, device="cpu")
    assert loaded.class_names == NAMES and loaded.bsize == 128
    for (k, v), w in zip(model.net.state_dict().items(), loaded.net.state_dict().values()):
        assert torch.equal(v, w), k
    assert inspect_model(path)["class_names"] == NAMES


def test_rebasing_keeps_named_class_channels(tmp_path):
    model = build_model("tiny", NAMES, device="cpu")
    with torch.no_grad():
        model.net.out.weight.normal_()
    path = model.save(tmp_path / "m.pth")
    again = build_model(path, ["unassigned", "elongated", "new"], device="cpu")
    ps2 = model.net.ps ** 2
    old = model.net.out.weight.detach().reshape(6, ps2, -1)
    new = again.net.out.weight.detach().reshape(6, ps2, -1)
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[2])  # background and "elongated" kept
    assert torch.equal(new[2], old[-1])  # "new" starts from cell probability
    assert torch.equal(new[-3:], old[-3:])  # flows and cell probability kept


def test_a_model_moves_to_another_tile_size(tmp_path):
    path = build_model("tiny", NAMES, device="cpu", bsize=128).save(tmp_path / "m.pth")
    bigger = build_model(path, NAMES, device="cpu", bsize=256)
    assert bigger.bsize == 256 and bigger.net.encoder.blocks[0].attn.rel_pos_h.shape[0] == 63
    assert bigger.net(torch.zeros(1, 3, 256, 256))[0].shape == (1, 6, 256, 256)


def test_rehead_drops_class_channels_for_a_plain_model():
    sd = build_network(ARCH_TINY, 6).state_dict()
    plain = rehead(sd, ARCH_TINY["ps"], NAMES, [])
    assert plain["out.weight"].shape[0] == 3 * ARCH_TINY["ps"] ** 2 and plain["W2"].shape[1] == 3


def test_missing_pretrained_weights_say_what_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cache"))
    with pytest.raises(ModelError) as err:
        build_model("cpsam", NAMES, device="cpu")
    msg = str(err.value)
    assert "'cpsam'" in msg and str(tmp_path / "cache" / "cpsam") in msg
    assert "CELLPOSE_LOCAL_MODELS_PATH" in msg and "copy" in msg
    assert not (tmp_path / "cache" / "cpsam").exists()  # nothing was downloaded


def test_pretrained_weights_come_from_cellposes_cache(tmp_path, monkeypatch):
    """A 3-channel file in the cache is read as the cpsam base; class channels grow from its cell probability."""
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    base = build_model("tiny", device="cpu", seed=4)
    torch.save(base.net.state_dict(), tmp_path / "cpsam")
    model = build_model("cpsam", NAMES, device="cpu")
    assert model.meta["base_model"] == "cpsam" and model.n_classes == 3
    assert torch.equal(model.net.encoder.pos_embed, base.net.encoder.pos_embed)
    ps2 = base.net.ps ** 2
    w = model.net.out.weight.detach().reshape(6, ps2, -1)
    assert torch.equal(w[3:], base.net.out.weight.detach().reshape(3, ps2, -1))


def test_bad_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        MultiClassModel.load(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable model file"):
        MultiClassModel.load(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "cp3.pth")
    with pytest.raises(ModelError, match="cellpose 4"):
        inspect_model(tmp_path / "cp3.pth")
    with pytest.raises(ModelError, match="Unknown base model"):
        build_model("resnet", device="cpu")
    with pytest.raises(ModelError, match="untrained"):
        open_model("tiny")
    with pytest.raises(ParameterError, match="multiple of the patch size"):
        build_model("tiny", device="cpu", bsize=100)


def test_sidecar_must_match_class_channels(tmp_path):
    path = build_model("tiny", NAMES, device="cpu").save(tmp_path / "m.pth")
    side = json.loads(sidecar_path(path).read_text())
    side["class_names"] = ["a", "b"]
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ModelError, match="names 2 classes but m.pth has 3 class channels"):
        MultiClassModel.load(path)


def test_model_without_classes_round_trips_through_upstream_cellpose(tmp_path):
    """A 3-channel model we save opens in upstream CellposeModel and gives our flows and masks.

    Upstream's constructor hard-codes the ViT-L size, so ``upstream_model`` lets it build the file's
    (tiny) architecture; reading the file (``load_model``) and ``eval`` are upstream's own code. That
    ViT-L files match upstream's layout key for key is checked in ``test_vitl_layout_is_upstream_cpsam_exactly``.
    """
    model = build_model("tiny", device="cpu", seed=3)
    with torch.no_grad():  # make every pixel foreground so that dynamics has work to do
        model.net.out.bias[-model.net.ps ** 2:] += 3.0
    path = model.save(tmp_path / "plain.pth")
    upstream = upstream_model(path, device="cpu")
    assert upstream.net.nout == 3
    for a, b in zip(upstream.net.state_dict().values(), model.net.state_dict().values()):
        assert torch.equal(a.float(), b)
    img, _ = make_sample(5, shape=(300, 280))
    masks_up, flows_up, _ = upstream.eval(img, channel_axis=-1, niter=50, flow_threshold=0.0)
    [ours] = segment(MultiClassModel.load(path, device="cpu"), [img],
                     SegmentParams(return_flows=True, niter=50, flow_threshold=0.0))
    np.testing.assert_allclose(ours.flows, flows_up[1], atol=1e-5)
    np.testing.assert_allclose(ours.cellprob, flows_up[2], atol=1e-5)
    assert masks_up.max() > 0
    np.testing.assert_array_equal(ours.masks, masks_up)


def test_unet_base_outputs_per_pixel_and_round_trips_through_its_file(tmp_path):
    """The convolutional base: any tile size, classes then flows then cell probability, tile size kept in the sidecar."""
    model = build_model("unet", NAMES, device="cpu", bsize=96)
    assert model.architecture == {**ARCH_UNET, "bsize": 96} and model.bsize == 96 and model.n_classes == 3
    model.net.eval()
    y = model.net(torch.zeros(2, 3, 64, 80))[0]
    assert y.shape == (2, 3 + N_SEG_CHANNELS, 64, 80)
    w = model.net.out.weight.detach()[:, :, 0, 0]
    assert torch.equal(w[1], w[5]) and torch.equal(w[0], -w[5])  # new classes start from the cell probability
    path = model.save(tmp_path / "u.pth")
    assert json.loads(sidecar_path(path).read_text())["architecture"]["name"] == "unet"
    loaded = MultiClassModel.load(path, device="cpu")
    assert loaded.bsize == 96 and loaded.class_names == NAMES
    for (k, v), w2 in zip(model.net.state_dict().items(), loaded.net.state_dict().values()):
        assert torch.equal(v, w2), k
    sd = torch.load(path, weights_only=True)
    assert architecture_of(sd) == {**ARCH_UNET, "nout": 6}  # readable without the sidecar too
    plain = build_model(path, [], device="cpu")
    assert plain.n_classes == 0 and plain.bsize == 96
    with pytest.raises(ModelError, match="U-Net"):
        upstream_model(path)
    with pytest.raises(ModelError, match="untrained"):
        open_model("unet")
    with pytest.raises(ParameterError, match="ViT encoder"):
        select_trainable(model.net, "lora")
