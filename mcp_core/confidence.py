"""Per-object confidence of a prediction, from what the network already outputs.

Scores, one value per mask id (index = mask id; ``nan`` at 0 and for ids with no pixels or
no score, e.g. objects drawn after the prediction):

``cellprob_mean``
    Mean cell probability (sigmoid of the cellprob logit) over the object's pixels; high = sure.
``flow_error``
    Cellpose's flow error (:func:`cellpose.dynamics.flow_error`): mean squared difference between
    the predicted flows and the flows recomputed from the mask; low = sure (cellpose drops
    masks above 0.4 by default).
``class_margin``
    Multi-class models only: the mean class probabilities over the object's pixels (softmax over
    the object classes), top one minus the runner-up; high = sure.
``class_entropy``
    Multi-class models only: entropy of those mean probabilities divided by ``log(n classes)``,
    in [0, 1]; low = sure.
``confidence``
    One number in [0, 1], high = sure: one minus :func:`object_uncertainty`.

They are stored in ``_pred.npy`` under the ``confidence`` key and appear as measurement columns.
The same dict keeps ``reviewed`` (1 where a person accepted the object), for the review mode's
queue (:func:`review_order`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

#: The stored scores, in column order.
SCORES = ("confidence", "cellprob_mean", "flow_error", "class_margin", "class_entropy")
#: Scores that grow with doubt (the others grow with confidence).
DOUBT_GROWS = ("flow_error", "class_entropy")
#: Flow error counted as full doubt (cellpose's default flow threshold).
FLOW_ERROR_SCALE = 0.4


def _per_object_mean(masks: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    flat = masks.ravel().astype(np.int64)
    area = np.bincount(flat, minlength=n)
    total = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / area
    out[0] = np.nan
    out[area == 0] = np.nan
    return out


def flow_errors(masks: np.ndarray, flows: np.ndarray, device=None) -> np.ndarray:
    """Cellpose's flow error per mask id (``nan`` at 0 and for absent ids).

    Parameters
    ----------
    masks
        ``(Y, X)`` instance masks; ids need not be consecutive.
    flows
        ``(2, Y, X)`` predicted flows (Y, X) as the network outputs them.
    device
        Torch device for cellpose's flow computation; on the CPU (default) :func:`mcp_core.flow_qc.flow_error`
        computes it.
    """
    from skimage.segmentation import relabel_sequential

    from .flow_qc import flow_error

    n = int(masks.max(initial=0)) + 1
    out = np.full(n, np.nan)
    if n == 1:
        return out
    seq = relabel_sequential(np.asarray(masks))[0]  # cellpose expects ids 1..n
    out[np.unique(masks[masks > 0])] = flow_error(seq, np.asarray(flows, np.float32), device)
    return out


def class_scores(masks: np.ndarray, class_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(margin, normalised entropy)`` per mask id from ``(K, Y, X)`` logits, class 0 being background.

    The object classes' probabilities (softmax over logits ``1..K-1``) are averaged over each
    object's pixels; needs at least two object classes.

    Raises
    ------
    ValueError
        Fewer than three logit channels (background and two classes).
    """
    logits = np.asarray(class_logits, np.float64)[1:]
    if logits.shape[0] < 2:
        raise ValueError(f"class scores need at least 2 object classes, got {logits.shape[0]}")
    z = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    n = int(masks.max(initial=0)) + 1
    mean = np.stack([_per_object_mean(masks, pc, n) for pc in p], axis=1)  # (n, classes)
    top2 = -np.sort(-np.nan_to_num(mean, nan=0.0), axis=1)[:, :2]
    margin = top2[:, 0] - top2[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(mean > 0, mean * np.log(mean), 0.0), axis=1) / np.log(mean.shape[1])
    missing = np.isnan(mean[:, 0])
    margin[missing] = np.nan
    entropy[missing] = np.nan
    return margin, entropy


def object_uncertainty(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """Doubt per mask id in [0, 1]: the mean of the available terms (``nan`` where none is known).

    Terms: ``1 - cellprob_mean``, ``flow_error / FLOW_ERROR_SCALE`` (capped at 1) and ``class_entropy``.
    """
    terms = []
    if "cellprob_mean" in scores:
        terms.append(1.0 - np.asarray(scores["cellprob_mean"], float))
    if "flow_error" in scores:
        terms.append(np.minimum(np.asarray(scores["flow_error"], float) / FLOW_ERROR_SCALE, 1.0))
    if "class_entropy" in scores:
        terms.append(np.asarray(scores["class_entropy"], float))
    if not terms:
        raise ValueError("no confidence scores to combine")
    with warnings.catch_warnings():  # "mean of empty slice" where no term is known
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(terms), axis=0)


def object_confidence(masks: np.ndarray, cellprob: np.ndarray, flows: np.ndarray | None = None,
                      class_logits: np.ndarray | None = None, device=None,
                      flow_error: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every score of the module docstring that the outputs allow, per mask id (``float32``).

    Parameters
    ----------
    masks
        ``(Y, X)`` instance masks.
    cellprob
        ``(Y, X)`` cell probability logits.
    flows
        ``(2, Y, X)`` predicted flows; ``flow_error`` is left out without them.
    class_logits
        ``(K, Y, X)`` class logits (background first); margin and entropy need ``K >= 3``.
    device
        Torch device for the flow error.
    flow_error
        The :func:`flow_errors` of *masks* when already known (:func:`mcp_core.masks.masks_and_flow_errors`);
        then *flows* are not read.

    Raises
    ------
    ValueError
        Arrays whose ``(Y, X)`` differs from the masks'.
    """
    masks = np.asarray(masks)
    for name, arr, lead in (("cellprob", cellprob, 0), ("flows", flows, 1), ("class_logits", class_logits, 1)):
        if arr is not None and np.shape(arr)[lead:] != masks.shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, which does not fit masks of shape {masks.shape}")
    n = int(masks.max(initial=0)) + 1
    prob = 1.0 / (1.0 + np.exp(-np.asarray(cellprob, np.float64)))
    out = {"cellprob_mean": _per_object_mean(masks, prob, n)}
    if flow_error is not None:
        out["flow_error"] = np.asarray(flow_error, np.float64)
    elif flows is not None:
        out["flow_error"] = flow_errors(masks, flows, device)
    if class_logits is not None and len(class_logits) >= 3:
        out["class_margin"], out["class_entropy"] = class_scores(masks, class_logits)
    out["confidence"] = 1.0 - object_uncertainty(out)
    return {k: out[k].astype(np.float32) for k in SCORES if k in out}


def scores_for(confidence: Mapping[str, np.ndarray] | None, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Stored scores picked for mask *ids* (``nan`` for ids past a score's end); ``{}`` when none are stored."""
    ids = np.asarray(ids, np.int64)
    out = {}
    for name in SCORES:
        if not confidence or name not in confidence:
            continue
        values = np.asarray(confidence[name], np.float64)
        picked = np.full(len(ids), np.nan)
        inside = ids < len(values)
        picked[inside] = values[ids[inside]]
        out[name] = picked
    return out


def review_order(confidence: Mapping[str, np.ndarray] | None, ids: np.ndarray, score: str = "confidence"
                 ) -> np.ndarray:
    """Mask ids still to review, least sure first by *score*.

    Objects accepted already (``reviewed`` = 1) and objects without that score (drawn or edited
    by hand since the prediction) are left out.

    Raises
    ------
    ValueError
        An unknown score name.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    ids = np.asarray(ids, np.int64)
    values = scores_for(confidence, ids).get(score, np.full(len(ids), np.nan))
    reviewed = np.asarray((confidence or {}).get("reviewed", ()), np.float64)
    done = np.zeros(len(ids), bool)
    inside = ids < len(reviewed)
    done[inside] = reviewed[ids[inside]] == 1
    keep = np.isfinite(values) & ~done
    doubt = values[keep] if score in DOUBT_GROWS else -values[keep]
    return ids[keep][np.argsort(-doubt, kind="stable")]


def mark_reviewed(confidence: dict[str, np.ndarray], mask_id: int, size: int) -> None:
    """Set ``reviewed`` of *mask_id* to 1 in place (the array grows to *size* ids, ``nan`` = not reviewed)."""
    old = np.asarray(confidence.get("reviewed", ()), np.float32)
    reviewed = np.full(max(size, len(old), mask_id + 1), np.nan, np.float32)
    reviewed[:len(old)] = old
    reviewed[mask_id] = 1.0
    confidence["reviewed"] = reviewed
