"""Per-object confidence: hand-made predictions, the segment path, storage in _pred.npy, edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cellpose import dynamics

from mcp_core.confidence import SCORES, class_scores, object_confidence, object_uncertainty, scores_for
from mcp_core.labels import LabelSet, load_labels, save_labels
from mcp_core.labels.npyfile import read_label_dict
from mcp_core.model import build_model
from mcp_core.params import SegmentParams
from mcp_core.predictions import save_prediction
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample


def _two_objects() -> np.ndarray:
    """Ids 3 and 7 (not consecutive), id 5 absent."""
    masks = np.zeros((48, 48), np.uint16)
    masks[4:18, 4:18] = 3
    masks[24:44, 26:40] = 7
    return masks


def _true_flows(masks: np.ndarray) -> np.ndarray:
    """Flows as the network would predict them for these masks (cellpose's 5x scale)."""
    seq = np.zeros_like(masks)
    for i, m in enumerate(np.unique(masks[masks > 0]), 1):
        seq[masks == m] = i
    return 5.0 * dynamics.masks_to_flows_gpu(seq.astype(np.int64), device=torch.device("cpu"))[0]


def test_cell_probability_is_the_mean_sigmoid_inside_each_mask():
    masks = _two_objects()
    cellprob = np.full(masks.shape, -5.0)
    cellprob[masks == 3] = 4.0
    cellprob[24:34, 26:40] = 2.0  # half of object 7 sure, half not
    cellprob[34:44, 26:40] = -2.0
    scores = object_confidence(masks, cellprob)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert scores["cellprob_mean"][3] == pytest.approx(sig(4.0), rel=1e-5)
    assert scores["cellprob_mean"][7] == pytest.approx((sig(2.0) + sig(-2.0)) / 2, rel=1e-5)
    assert np.isnan(scores["cellprob_mean"][[0, 5]]).all() and len(scores["cellprob_mean"]) == 8
    assert set(scores) == {"cellprob_mean", "confidence"}  # no flows, no classes: nothing else claimed
    assert scores["confidence"][3] > scores["confidence"][7]


def test_flow_error_is_low_for_consistent_flows_and_high_for_reversed_ones():
    masks = _two_objects()
    flows = _true_flows(masks)
    flows[:, masks == 7] *= -1  # object 7's predicted flows point outwards
    scores = object_confidence(masks, np.where(masks > 0, 5.0, -5.0), flows)
    assert scores["flow_error"][3] < 1e-6
    assert scores["flow_error"][7] > 1.0
    assert scores["confidence"][7] < scores["confidence"][3]
    assert np.isnan(scores["flow_error"][5])


def test_class_margin_and_entropy_of_clear_and_ambiguous_objects():
    masks = _two_objects()
    logits = np.zeros((4, *masks.shape))  # background + 3 object classes
    logits[2][masks == 3] = 8.0  # object 3: clearly class 2
    margin, entropy = class_scores(masks, logits)  # object 7: all three classes equal
    assert margin[3] > 0.99 and entropy[3] < 0.01
    assert margin[7] == pytest.approx(0.0, abs=1e-9) and entropy[7] == pytest.approx(1.0)
    assert np.isnan(margin[[0, 5]]).all()
    with pytest.raises(ValueError, match="at least 2 object classes"):
        class_scores(masks, logits[:2])


def test_uncertainty_combines_the_known_terms_and_shapes_are_checked():
    u = object_uncertainty({"cellprob_mean": np.array([np.nan, 1.0, 0.5]), "flow_error": np.array([np.nan, 0.8, 0.0]),
                            "class_entropy": np.array([np.nan, 0.0, np.nan])})
    assert np.isnan(u[0]) and u[1] == pytest.approx((0 + 1 + 0) / 3) and u[2] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="does not fit"):
        object_confidence(np.zeros((4, 4), np.uint8), np.zeros((5, 4)))


def test_scores_for_pads_ids_past_the_stored_end():
    picked = scores_for({"confidence": np.array([np.nan, 0.9, 0.1])}, np.array([2, 1, 4]))
    np.testing.assert_allclose(picked["confidence"], [0.1, 0.9, np.nan])
    assert scores_for(None, np.array([1])) == {}


def test_stored_in_pred_files_and_forgotten_for_edited_objects(tmp_path):
    masks = _two_objects()
    ls = LabelSet(masks, confidence=object_confidence(masks, np.where(masks > 0, 3.0, -3.0), _true_flows(masks)))
    path = save_labels(tmp_path / "a_pred.npy", ls)
    back = load_labels(path)
    assert set(back.confidence) == {"confidence", "cellprob_mean", "flow_error"}
    np.testing.assert_allclose(back.confidence["cellprob_mean"], ls.confidence["cellprob_mean"])
    back.delete([3])
    assert np.isnan(back.confidence["confidence"][3]) and not np.isnan(back.confidence["confidence"][7])
    assert "confidence" not in read_label_dict(save_labels(tmp_path / "b_seg.npy", LabelSet(masks)))


def _rigged(class_bias: list[float]):
    """A tiny model whose readout says: every pixel foreground, classes by *class_bias*."""
    model = build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=7, bsize=128)
    ps2 = model.net.ps ** 2
    with torch.no_grad():
        model.net.out.bias[-ps2:] += 3.0
        for c, b in enumerate(class_bias):
            model.net.out.weight[c * ps2:(c + 1) * ps2] = 0
            model.net.out.bias[c * ps2:(c + 1) * ps2] = b
    return model


def test_segment_scores_every_mask_and_writes_them_to_pred_files(tmp_path):
    image = make_sample(0, shape=(128, 128))[0]
    params = SegmentParams(bsize=128, flow_threshold=0.0, niter=50)
    [sure] = segment(_rigged([0.0, 0.0, 6.0]), [image], params)
    [torn] = segment(_rigged([0.0, 0.0, 0.0]), [image], params)
    assert sure.masks.max() > 0
    assert set(sure.confidence) == set(SCORES)
    ids = np.unique(sure.masks[sure.masks > 0])
    for values in sure.confidence.values():
        assert len(values) == sure.masks.max() + 1 and np.isfinite(values[ids]).all()
    assert (sure.confidence["class_margin"][ids] > 0.99).all()
    torn_ids = np.unique(torn.masks[torn.masks > 0])
    assert (torn.confidence["class_entropy"][torn_ids] > 0.99).all()
    out = save_prediction(sure, tmp_path / "img.tif")
    np.testing.assert_allclose(load_labels(out).confidence["confidence"], sure.confidence["confidence"])


def test_confidence_plugin_puts_stored_scores_in_the_measurement_table(tmp_path):
    import tifffile

    from mcp_core.measure import measure, measure_labels
    from mcp_core.measure.validate import validate

    masks = _two_objects()
    scores = object_confidence(masks, np.where(masks == 3, 4.0, np.where(masks > 0, -1.0, -5.0)), _true_flows(masks))
    ls = LabelSet(masks, confidence=scores)
    df = measure_labels(ls, np.ones(masks.shape), ["basic", "confidence"])
    assert df["mask_id"].tolist() == [3, 7]
    np.testing.assert_allclose(df["cellprob_mean"], scores["cellprob_mean"][[3, 7]], rtol=1e-6)
    assert df["class_margin"].isna().all()  # a single-class prediction has no class scores
    assert df.sort_values("confidence")["mask_id"].tolist() == [7, 3]  # review order: least sure first
    tifffile.imwrite(tmp_path / "img.tif", np.ones(masks.shape, np.uint8))
    save_labels(tmp_path / "img_pred.npy", ls)
    save_labels(tmp_path / "img_seg.npy", LabelSet(masks))
    from_pred = measure(tmp_path, ["confidence"], source="pred")
    np.testing.assert_allclose(from_pred["confidence"], scores["confidence"][[3, 7]], rtol=1e-6)
    assert measure(tmp_path, ["confidence"], source="seg")["confidence"].isna().all()
    assert all(r.ok for r in validate("confidence"))


def test_the_app_project_keeps_scores_when_it_adopts_a_prediction(tmp_path):
    from mcp_app.project import Project

    masks = _two_objects()
    ls = LabelSet(masks, confidence=object_confidence(masks, np.where(masks > 0, 2.0, -2.0)))
    adopted = Project(tmp_path).adopt(ls)
    np.testing.assert_array_equal(adopted.confidence["confidence"], ls.confidence["confidence"])


def test_review_order_is_least_sure_first_and_skips_reviewed_and_unscored_objects():
    from mcp_core.confidence import mark_reviewed, review_order

    conf = {"confidence": np.array([np.nan, 0.9, 0.2, np.nan, 0.5]),
            "flow_error": np.array([np.nan, 0.1, 0.05, np.nan, 0.3])}
    ids = np.array([1, 2, 3, 4, 5])  # 3 has no score (drawn by hand), 5 is past the stored arrays
    assert review_order(conf, ids).tolist() == [2, 4, 1]
    assert review_order(conf, ids, "flow_error").tolist() == [4, 1, 2]  # a larger flow error is less sure
    mark_reviewed(conf, 2, 6)
    assert review_order(conf, ids).tolist() == [4, 1] and len(conf["reviewed"]) == 6
    assert review_order(None, ids).tolist() == []
    with pytest.raises(ValueError, match="unknown score"):
        review_order(conf, ids, "area")
