"""Inference: batching tiles across images, per-mask class vote, prediction files, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from mcp_core.errors import ParameterError
from mcp_core.labels import load_labels_for
from mcp_core.model import build_model
from mcp_core.params import SegmentParams
from mcp_core import segment as segment_module
from mcp_core.predictions import save_prediction
from mcp_core.segment import segment, segment_files
from mcp_core.synthetic import make_sample

NAMES = ["unassigned", "round", "elongated"]
LOOSE = {"flow_threshold": 0.0, "niter": 50}


def _rig(model, class_bias: list[float], cellprob_bias: float = 3.0):
    """Bias the readout: every pixel foreground, class logits shifted by *class_bias*."""
    ps2 = model.net.ps ** 2
    with torch.no_grad():
        model.net.out.bias[-ps2:] += cellprob_bias
        for c, b in enumerate(class_bias):
            model.net.out.weight[c * ps2:(c + 1) * ps2] = 0
            model.net.out.bias[c * ps2:(c + 1) * ps2] = b
    return model


@pytest.fixture(scope="module")
def model():
    return _rig(build_model("tiny", NAMES, device="cpu", seed=7, bsize=128), [0.0, 0.0, 0.0])


def test_tiles_batched_across_images_give_the_per_image_results(model, monkeypatch):
    monkeypatch.setattr(segment_module, "CPU_TILES_PER_PASS", 8)  # passes of several tiles, also on the CPU
    images = [make_sample(i, shape=s)[0] for i, s in enumerate([(300, 280), (128, 128), (90, 410)])]
    together = segment(model, images, SegmentParams(bsize=128, batch_size=8, return_flows=True, **LOOSE))
    alone = [segment(model, [img], SegmentParams(bsize=128, batch_size=1, return_flows=True, **LOOSE))[0] for img in images]
    for a, b, img in zip(together, alone, images):
        assert a.masks.shape == img.shape[:2] and a.flows.shape == (2, *img.shape[:2])
        np.testing.assert_allclose(a.flows, b.flows, atol=1e-5)
        np.testing.assert_array_equal(a.masks, b.masks)
        assert a.masks.max() > 0 and len(a.classes) == a.masks.max() + 1


def test_the_cpu_runs_tiles_one_per_pass_with_the_results_of_larger_passes(model, monkeypatch):
    images = [make_sample(i, shape=(200, 260))[0] for i in range(2)]
    params = SegmentParams(bsize=128, batch_size=8, return_flows=True, **LOOSE)
    passes = []
    forward = segment_module._forward
    monkeypatch.setattr(segment_module, "_forward",
                        lambda net, x, device: passes.append(len(x)) or forward(net, x, device))
    single = segment(model, images, params)
    assert set(passes) == {1}
    monkeypatch.setattr(segment_module, "CPU_TILES_PER_PASS", 8)
    passes.clear()
    several = segment(model, images, params)
    assert max(passes) == 8
    for a, b in zip(single, several):
        np.testing.assert_allclose(a.flows, b.flows, atol=1e-5)  # a pass's size may change kernels' rounding
        np.testing.assert_array_equal(a.masks, b.masks)


def test_a_bad_image_among_good_ones_raises_a_clear_error(model):
    """An image that cannot be prepared stops the batch with a parameter error naming the problem."""
    images = [make_sample(1, shape=(128, 128))[0], np.zeros((4, 4, 4, 4))]
    with pytest.raises(ParameterError, match="must be"):
        segment(model, images, SegmentParams(bsize=128, batch_size=1, **LOOSE))


def test_class_is_the_vote_of_foreground_classes_even_where_background_wins():
    rigged = _rig(build_model("tiny", NAMES, device="cpu", seed=7, bsize=128), [10.0, 0.0, 5.0])
    [res] = segment(rigged, [make_sample(0, shape=(128, 128))[0]], SegmentParams(bsize=128, **LOOSE))
    assert res.masks.max() > 0
    assert (res.class_map == 0).all()  # the raw per-pixel argmax says background...
    assert (res.classes[1:] == 2).all() and res.classes[0] == 0  # ...each mask still gets its best class
    assert res.class_names == NAMES and len(res.class_colors) == 3


def test_model_without_classes_gives_unassigned_masks():
    plain = _rig(build_model("tiny", device="cpu", seed=7, bsize=128), [])
    [res] = segment(plain, [make_sample(0, shape=(128, 128))[0]], SegmentParams(bsize=128, **LOOSE))
    assert res.masks.max() > 0 and not res.classes.any() and res.class_names == ["unassigned"]


def test_augment_diameter_and_channels(model):
    img = make_sample(2, shape=(200, 160), n_channels=3)[0]
    [aug] = segment(model, [img], SegmentParams(bsize=128, augment=True, return_flows=True, **LOOSE))
    assert aug.masks.shape == (200, 160) and aug.flows.shape == (2, 200, 160)
    [scaled] = segment(model, [img], SegmentParams(bsize=128, diameter=2 * model.diameter, channels=[1, 0], **LOOSE))
    assert scaled.masks.shape == (200, 160) and scaled.diameter == pytest.approx(2 * model.diameter)
    with pytest.raises(ParameterError, match="Channel"):
        segment(model, [img], SegmentParams(bsize=128, channels=[5]))
    with pytest.raises(ParameterError, match="128-pixel tiles; set bsize to 128"):
        segment(model, [img], SegmentParams(bsize=256))


def test_predictions_are_written_as_pred_files_per_frame(model, tmp_path):
    frames = np.stack([np.moveaxis(make_sample(i, shape=(128, 128))[0], -1, 0) for i in range(2)])
    tifffile.imwrite(tmp_path / "movie.tif", frames, metadata={"axes": "TCYX"})
    tifffile.imwrite(tmp_path / "still.tif", frames[0], metadata={"axes": "CYX"})
    (tmp_path / "broken.tif").write_bytes(b"II*\x00junk")
    events = []
    out = segment_files(model, [tmp_path], SegmentParams(bsize=128, **LOOSE), progress=lambda k, d: events.append((k, d)))
    assert sorted(p.split("/")[-1] for p in out["written"]) == ["movie__T0_pred.npy", "movie__T1_pred.npy", "still_pred.npy"]
    assert [s["path"].split("/")[-1] for s in out["skipped"]] == ["broken.tif"] and not out["cancelled"]
    labels = load_labels_for(tmp_path / "movie.tif", "T1", kind="pred")
    assert labels.class_names == NAMES and labels.count > 0
    assert load_labels_for(tmp_path / "movie.tif", "T1") is None  # predictions never become labels by themselves
    kinds = [k for k, _ in events]
    assert kinds.count("artifact") == 3 and "log" in kinds and events[-1][1]["fraction"] == 1.0
    # Elsewhere, and stopping early.
    [res] = segment(model, [frames[0].transpose(1, 2, 0)], SegmentParams(bsize=128, return_flows=True, **LOOSE))
    path = save_prediction(res, tmp_path / "still.tif", folder=tmp_path / "preds")
    assert path == tmp_path / "preds" / "still_pred.npy" and load_labels_for(tmp_path / "still.tif", kind="pred") is not None
    stopped = segment_files(model, [tmp_path / "movie.tif"], SegmentParams(bsize=128), should_stop=lambda: True)
    assert stopped["cancelled"] and stopped["written"] == []
