"""Training data, augmentation, loss weights, cancellation, and the must-show: a tiny model learns 2 classes on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from cellpose import dynamics

from mcp_core.augment import random_affine
from mcp_core.catalog import OFFLINE_BASE, sidecar_path
from mcp_core.classmap import IGNORE
from mcp_core.dataset import MAX_CLASS_WEIGHT, class_weights, load_samples, split
from mcp_core.errors import ParameterError
from mcp_core.evaluation import evaluate
from mcp_core.labels import LabelSet, save_labels
from mcp_core.model import MultiClassModel
from mcp_core.params import (FINETUNE_DEFAULTS, SCRATCH_DEFAULTS, SegmentParams, TrainParams, resolve_train_params,
                             train_defaults)
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample, write_demo_project
from mcp_core.train import learning_rate, train
from waiting import patience

# The offline base with its from-scratch defaults; few crops per epoch keep these checks short.
FAST = {"base_model": "tiny", "nimg_per_epoch": 4}


def test_augmentation_moves_flows_and_classes_with_the_image():
    """After a random rotation/flip/scale the moved flows match flows computed on the moved masks."""
    _, labels = make_sample(3, shape=(192, 192))
    masks = labels.masks.astype(np.int32)
    flows = dynamics.labels_to_flows([masks.copy()])[0]
    target = np.concatenate([masks[None].astype(np.float32), flows[1:]])  # channel 0 (ids) moves by nearest neighbour
    image = np.repeat(masks[None].astype(np.float32), 3, axis=0)
    rng = np.random.default_rng(0)
    x, y = random_affine([image] * 6, [target] * 6, 128, scale_range=0.5, rng=rng)
    assert x.shape == (6, 3, 128, 128) and y.shape == (6, 4, 128, 128)
    ids = set(np.unique(masks).tolist())
    for n in range(6):
        moved = y[n, 0].numpy().astype(np.int32)
        assert set(np.unique(moved).tolist()) <= ids  # never a blend of two ids
        inside = (moved > 0) & (y[n, 1].numpy() > 0.99)
        recomputed = dynamics.labels_to_flows([moved.copy()])[0][2:]
        cos = (recomputed * y[n, 2:].numpy()).sum(0)[inside] / (np.linalg.norm(y[n, 2:].numpy(), axis=0)[inside] + 1e-6)
        assert np.median(cos) > 0.9, f"sample {n}: flows point elsewhere than the moved masks' flows"


def test_class_weights_are_smoothed_and_capped():
    class Fake:
        def __init__(self, cmap):
            self.target = np.stack([cmap.astype(np.float32)] + [np.zeros_like(cmap, np.float32)] * 3)

    cmap = np.zeros((100, 100), np.int64)
    cmap[:30] = 1
    cmap[99, :5] = 2
    cmap[0, 0] = IGNORE
    w = class_weights([Fake(cmap)], 4)
    assert w[0] < w[1] < w[2] <= MAX_CLASS_WEIGHT
    assert w[2] / w[1] < 3000 / 5  # far less than the plain inverse frequency ratio
    assert np.isfinite(w[3])


def _write_frames_and_pairs(folder):
    """A 2-frame TIFF labelled per frame, a _masks/_classes TIFF pair, and a file whose class ids differ."""
    folder.mkdir()
    img0, lab0 = make_sample(0, shape=(96, 96))
    img1, lab1 = make_sample(1, shape=(96, 96))
    tifffile.imwrite(folder / "movie.tif", np.stack([np.moveaxis(img0, -1, 0), np.moveaxis(img1, -1, 0)]),
                     metadata={"axes": "TCYX"})
    save_labels(folder / "movie__T0_seg.npy", lab0)
    save_labels(folder / "movie__T1_seg.npy", lab1)
    img2, lab2 = make_sample(2, shape=(96, 96))
    tifffile.imwrite(folder / "pair.tif", np.moveaxis(img2, -1, 0), metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "pair_masks.tif", lab2.masks)
    tifffile.imwrite(folder / "pair_classes.tif", lab2.class_map())
    img3, lab3 = make_sample(3, shape=(96, 96))
    swapped = LabelSet(lab3.masks, np.where(lab3.classes == 1, 2, np.where(lab3.classes == 2, 1, 0)),
                       ["unassigned", "elongated", "round"])
    swapped.classes[1] = 0  # one mask left unassigned
    tifffile.imwrite(folder / "swapped.tif", np.moveaxis(img3, -1, 0), metadata={"axes": "CYX"})
    save_labels(folder / "swapped_seg.npy", swapped)
    tifffile.imwrite(folder / "unlabelled.tif", np.moveaxis(img3, -1, 0), metadata={"axes": "CYX"})
    return [lab0, lab1, lab2, lab3]


def test_dataset_reads_frames_and_tiff_pairs_and_matches_classes_by_name(tmp_path):
    truth = _write_frames_and_pairs(tmp_path / "d")
    samples, names, _ = load_samples(tmp_path / "d", ["unassigned", "round", "elongated"])
    assert [(s.source.split("/")[-1], s.frame) for s in samples] == [
        ("movie.tif", "T0"), ("movie.tif", "T1"), ("pair.tif", ""), ("swapped.tif", "")]
    assert names == ["unassigned", "round", "elongated"]
    for s, lab in zip(samples, truth):
        assert s.image.shape == (3, 96, 96) and s.target.shape == (4, 96, 96)
        np.testing.assert_array_equal(s.target[1] > 0.5, lab.masks > 0)
    # "swapped" names its classes the other way round: mapped by name back to the truth.
    expected = truth[3].classes.astype(np.int64)
    expected[1] = IGNORE
    np.testing.assert_array_equal(samples[3].classes[1:], expected[1:])
    cmap = samples[3].target[0]
    assert (cmap[truth[3].masks == 1] == IGNORE).all() and (cmap[truth[3].masks == 0] == 0).all()
    # The TIFF pair's classes have ids but no names: matched by id.
    np.testing.assert_array_equal(samples[2].classes[1:], truth[2].classes[1:])
    # Without given names, the named classes found in the files are used.
    assert load_samples(tmp_path / "d")[1] == ["unassigned", "round", "elongated"]


def test_split_is_seeded_and_keeps_both_sides():
    items = list(range(10))
    a, b = split(items, 0.2, seed=5), split(items, 0.2, seed=5)
    assert a == b and len(a[1]) == 2 and sorted(a[0] + a[1]) == items
    assert split(items, 0.2, seed=6) != a
    assert split(items[:2], 0.01, seed=0)[1] and split(items[:1], 0.5, seed=0)[1] == []


def test_learning_rate_warms_up_then_decays():
    lrs = [learning_rate(s, 100, 1.0) for s in range(100)]
    assert lrs[0] < lrs[4] <= 1.0 and lrs[-1] < 0.1 and max(lrs) == pytest.approx(1.0)


def test_no_usable_training_frames_is_a_clear_error(tmp_path):
    write_demo_project(tmp_path / "d", n_images=2, n_labelled=2)
    with pytest.raises(ParameterError, match="none with at least 500 masks"):
        train(tmp_path / "d", TrainParams(**FAST, epochs=1, min_train_masks=500, save_path=str(tmp_path)))


def test_cancelled_training_leaves_a_loadable_checkpoint(tmp_path):
    write_demo_project(tmp_path / "d", n_images=4, n_labelled=4, shape=(128, 128))
    polls = iter(range(1000))
    events = []
    result = train(tmp_path / "d", TrainParams(**{**FAST, "batch_size": 2}, epochs=50, test_ratio=0.25,
                                               model_name="cut", save_path=str(tmp_path / "models")),
                   progress=lambda kind, data: events.append(kind), should_stop=lambda: next(polls) >= 3)
    assert result.cancelled and result.epochs_done == 1 and result.metrics == {}
    model = MultiClassModel.load(result.model_path, device="cpu")
    assert model.class_names == ["unassigned", "round", "elongated"]
    side = json.loads(sidecar_path(result.model_path).read_text())
    assert side["state"] == "cancelled" and side["epochs_done"] == 1 and len(side["data"]["train"]) == 3
    assert "artifact" in events and events.count("loss") == 1


def test_test_folder_and_replay(tmp_path):
    write_demo_project(tmp_path / "d", n_images=2, n_labelled=2, shape=(128, 128))
    write_demo_project(tmp_path / "t", n_images=3, n_labelled=3, shape=(128, 128), seed=10)
    write_demo_project(tmp_path / "r", n_images=2, n_labelled=2, shape=(128, 128), seed=20)
    logs = []
    result = train(tmp_path / "d", TrainParams(**{**FAST, "batch_size": 4, "rescale": True}, epochs=1,
                                               test_dir=str(tmp_path / "t"), replay_dir=str(tmp_path / "r"),
                                               replay_fraction=0.5, save_path=str(tmp_path / "m.pth")),
                   progress=lambda kind, data: logs.append(data.get("message", "")) if kind == "log" else None)
    assert result.n_train == 2 and result.n_test == 3 and result.model_path == str(tmp_path / "m.pth")
    assert any("(4 crops +2 replayed per epoch), testing on 3" in m for m in logs)
    side = json.loads(sidecar_path(tmp_path / "m.pth").read_text())
    assert [r["file"] for r in side["data"]["replay"]] == ["demo_01.tif", "demo_02.tif"]
    assert len(side["data"]["test"]) == 3 and len(side["data"]["digest"]) == 64
    # Trained with rescaling: the network works at its 30-pixel diameter, the labels' own is recorded.
    assert side["diam_mean"] == pytest.approx(30.0) and 10 < side["diameter"] < 30


def test_from_scratch_defaults_differ_from_fine_tuning_defaults(tmp_path):
    """A pretrained base keeps the fine-tuning recipe; a random one gets steps that learn, and enough of them."""
    tuned = resolve_train_params(TrainParams(base_model="cpsam"))
    scratch = resolve_train_params(TrainParams(base_model="tiny"))
    assert (tuned.learning_rate, tuned.weight_decay, tuned.bsize, tuned.nimg_per_epoch) == (1e-5, 0.1, 256, 0)
    assert scratch.learning_rate >= 100 * tuned.learning_rate and scratch.weight_decay < tuned.weight_decay
    assert scratch.bsize < tuned.bsize and scratch.nimg_per_epoch >= 2 * scratch.batch_size
    # What the user sets is kept; a model file's sidecar says how it was made (and keeps its tile size).
    assert resolve_train_params(TrainParams(base_model="tiny", learning_rate=1e-4)).learning_rate == 1e-4
    for arch, expected in (({"name": "tiny", "bsize": 96}, {**SCRATCH_DEFAULTS, "bsize": 96}),
                           ({"name": "sam_vitl", "bsize": 256}, FINETUNE_DEFAULTS)):
        sidecar_path(tmp_path / "m.pth").write_text(json.dumps({"architecture": arch}))
        assert train_defaults(str(tmp_path / "m.pth")) == expected
    assert train_defaults("my_model", architecture="tiny") == SCRATCH_DEFAULTS


def test_a_model_that_scores_zero_gets_plain_advice_in_the_job_panel():
    from mcp_app.job_panel import zero_ap_advice

    assert zero_ap_advice({"metrics": {"ap50": 0.4, "tp": 3, "fp": 1, "fn": 2}}) is None
    assert zero_ap_advice({"metrics": {}}) is None  # no test split, nothing to judge
    nothing = zero_ap_advice({"metrics": {"ap50": 0.0, "tp": 0, "fp": 0, "fn": 12}, "n_train": 2})
    assert "no objects at all" in nothing and "more epochs" in nothing and "trained on 2" in nothing
    assert "learning rate" in nothing
    wrong = zero_ap_advice({"metrics": {"ap50": 0.0, "tp": 0, "fp": 7, "fn": 12}, "n_train": 16})
    assert "None of the 7 objects" in wrong and "every object" in wrong


@pytest.mark.slow
@pytest.mark.timeout(patience(1800))  # ~3 minutes on 2 idle cores; a loaded machine may take several times that
def test_offline_base_learns_two_classes_on_the_demo_with_the_default_settings(tmp_path):
    """Must-show: the demo project, the offline base and its default settings give AP@0.5 >= 0.8 and class
    accuracy >= 0.9 on held-out images, with the loss falling."""
    write_demo_project(tmp_path / "data")
    seen = []
    result = train(tmp_path / "data", TrainParams(base_model=OFFLINE_BASE, model_name="offline",
                                                  save_path=str(tmp_path / "models")),
                   progress=lambda kind, data: seen.append((kind, data)))
    epochs = SCRATCH_DEFAULTS["epochs"]
    assert not result.cancelled and result.epochs_done == epochs and (result.n_train, result.n_test) == (16, 4)
    losses = [d["train_loss"] for k, d in seen if k == "loss"]
    assert len(losses) == epochs and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    progress = [d for k, d in seen if k == "progress" and d.get("stage") == "training"]
    assert {"elapsed", "eta", "fraction", "epoch"} <= set(progress[0]) and progress[-1]["fraction"] == 1.0
    # Metrics of the test split are in the result and the sidecar.
    side = json.loads(sidecar_path(result.model_path).read_text())
    assert side["metrics"]["ap50"] == pytest.approx(result.metrics["ap50"])
    assert side["training"]["learning_rate"] == SCRATCH_DEFAULTS["learning_rate"]
    assert {"round", "elongated"} == set(result.metrics["per_class"])
    assert {"precision", "recall", "f1"} <= set(result.metrics["per_class"]["round"])

    # Held-out images the model never saw (other seeds), through the public segment().
    model = MultiClassModel.load(result.model_path, device="cpu")
    held_out = [make_sample(1000 + i) for i in range(4)]
    results = segment(model, [img for img, _ in held_out], SegmentParams(bsize=model.bsize))
    scores = evaluate([lab.masks for _, lab in held_out], [lab.classes for _, lab in held_out],
                      [r.masks for r in results], [r.classes for r in results], model.class_names)
    assert scores["ap50"] >= 0.8, scores
    assert scores["class_accuracy"] >= 0.9, scores
