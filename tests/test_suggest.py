""""Label this next": doubt of a prediction, the greedy doubt + diversity ranking, the suggest command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcp_core.confidence import object_confidence
from mcp_core.errors import ImageReadError, ParameterError
from mcp_core.model import build_model
from mcp_core.params import SegmentParams, SegmentResult
from mcp_core.suggest import predict_with_embedding, prediction_doubt, rank, suggest
from mcp_core.synthetic import make_sample, write_demo_project
from test_cli_core import run_cli


def _prediction(cellprob_inside: float) -> SegmentResult:
    """Two square objects whose cell probability logit is *cellprob_inside*."""
    masks = np.zeros((40, 40), np.uint16)
    masks[2:12, 2:12], masks[20:35, 20:35] = 1, 2
    cellprob = np.where(masks > 0, cellprob_inside, -6.0)
    return SegmentResult(masks=masks, classes=np.zeros(3, np.uint16), class_names=["unassigned"],
                         confidence=object_confidence(masks, cellprob))


def test_a_clearly_uncertain_prediction_ranks_first():
    preds = [_prediction(6.0), _prediction(0.2), _prediction(5.0), _prediction(4.0)]
    doubts = [prediction_doubt(p) for p in preds]
    assert doubts[1] > 0.4 > 0.05 > doubts[0]
    emb = np.random.default_rng(0).normal(size=(4, 8))
    order = rank(doubts, emb)
    assert order[0][0] == 1
    assert sorted(i for i, _, _ in order) == [0, 1, 2, 3]
    assert [i for i, _, _ in rank(doubts, emb, diversity=0.0)] == list(np.argsort(doubts)[::-1])


def test_a_few_puzzling_objects_among_many_easy_ones_make_a_frame_doubtful():
    masks = np.zeros((40, 80), np.uint16)
    for i in range(8):
        masks[5:15, 2 + 10 * i:9 + 10 * i] = i + 1
    logit = np.array([-6.0] + [6.0] * 6 + [-0.5] * 2)  # objects 7 and 8 barely above the threshold
    conf = object_confidence(masks, logit[masks])
    pred = SegmentResult(masks=masks, classes=np.zeros(9, np.uint16), class_names=["unassigned"], confidence=conf)
    u = 1.0 - conf["confidence"][1:]
    assert prediction_doubt(pred) == pytest.approx(u[6:].mean(), rel=1e-6)  # the top quarter: 2 of 8 objects
    assert prediction_doubt(pred) > 2 * u.mean() and prediction_doubt(pred, top=1.0) == pytest.approx(u.mean())


def test_the_ranking_depends_on_the_doubts_order_and_spacing_not_their_level():
    emb = np.random.default_rng(1).normal(size=(6, 8))
    doubts = np.array([0.2, 0.25, 0.21, 0.3, 0.22, 0.23])
    order = [i for i, _, _ in rank(doubts, emb)]
    assert [i for i, _, _ in rank(0.1 + 0.5 * doubts, emb)] == order and order[0] == 3


def test_no_objects_is_full_doubt():
    empty = SegmentResult(masks=np.zeros((8, 8), np.uint16), classes=np.zeros(1, np.uint16), class_names=["x"])
    assert prediction_doubt(empty) == 1.0


def test_diversity_keeps_near_copies_out_of_the_top():
    base = np.eye(6)
    emb = np.stack([base[0], base[0] + 0.01, base[0] - 0.01, base[3], base[5]])
    doubts = [0.9, 0.89, 0.88, 0.6, 0.1]
    top2 = [i for i, _, _ in rank(doubts, emb, diversity=1.0)[:2]]
    assert top2 == [0, 3]  # the second near-copy of image 0 loses to a different, less doubtful image
    # an image like one already labelled loses its diversity bonus
    first = rank([0.5, 0.5], np.stack([base[1], base[2]]), known=np.stack([base[1]]), diversity=1.0)
    assert first[0][0] == 1
    with pytest.raises(ParameterError, match=">= 0"):
        rank(doubts, emb, diversity=-1)


@pytest.mark.parametrize("arch", ["tiny", "unet"])
def test_embedding_comes_from_the_encoder_and_follows_the_image(arch):
    model = build_model(arch, ["unassigned", "round", "elongated"], device="cpu", seed=3, bsize=128)
    params = SegmentParams(bsize=128, niter=50)
    a, b = make_sample(1, shape=(128, 128))[0], make_sample(2, shape=(128, 128))[0]
    res, ea = predict_with_embedding(model, a, params)
    assert res.masks.shape == (128, 128) and ea.ndim == 1 and ea.size > 1
    np.testing.assert_allclose(predict_with_embedding(model, a, params)[1], ea, rtol=1e-5)
    assert not np.allclose(predict_with_embedding(model, b, params)[1], ea)


def test_suggest_lists_only_unlabelled_frames(tmp_path):
    folder = write_demo_project(tmp_path / "proj", n_images=4, n_labelled=1, shape=(128, 128))
    model = build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=3, bsize=128)
    found = suggest(folder, model, n=2, params=SegmentParams(bsize=128, niter=50))
    assert [s.rank for s in found] == [1, 2]
    labelled = {p.name.replace("_seg.npy", ".tif") for p in folder.glob("*_seg.npy")}
    assert labelled and not labelled & {s.image.rsplit("/", 1)[-1] for s in found}
    assert all(0 <= s.doubt <= 1 for s in found) and found[0].score >= found[1].score - 1e-9
    with pytest.raises(ParameterError, match="at least one"):
        suggest(folder, model, n=0)
    with pytest.raises(ImageReadError, match="does not exist"):
        suggest(tmp_path / "missing", model)


def test_suggest_command(tmp_path):
    folder = write_demo_project(tmp_path / "proj", n_images=3, n_labelled=1, shape=(128, 128))
    model_path = build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=3,
                             bsize=128).save(tmp_path / "m.pth")
    out = run_cli("suggest", str(folder), "--model", str(model_path), "-n", "5", "--json", "-q")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 2 and {r["rank"] for r in rows} == {1, 2}  # 2 unlabelled frames, though 5 were asked for
