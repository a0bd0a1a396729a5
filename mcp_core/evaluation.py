"""Scores of a segmentation against ground truth: AP@0.5, error rate, per-class precision/recall/F1.

Detection uses cellpose's ``metrics.average_precision``. Class scores are computed over the
matched pairs (a true and a predicted mask with IoU >= 0.5, which pairs them one to one), so
they measure the class decision on objects that were found; missed and spurious objects
are already counted by the error rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from cellpose import metrics

IOU_THRESHOLD = 0.5


def matched_pairs(masks_true: np.ndarray, masks_pred: np.ndarray, threshold: float = IOU_THRESHOLD
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(true ids, predicted ids)`` of masks overlapping with IoU above *threshold* (> 0.5: one to one)."""
    t = np.asarray(masks_true, np.int64).ravel()
    p = np.asarray(masks_pred, np.int64).ravel()
    n_pred = int(p.max(initial=0)) + 1
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both] * n_pred + p[both], return_counts=True)
    ti, pi = pairs // n_pred, pairs % n_pred
    area_t, area_p = np.bincount(t), np.bincount(p, minlength=n_pred)
    iou = inter / (area_t[ti] + area_p[pi] - inter)
    keep = iou > threshold
    return ti[keep], pi[keep]


def evaluate(masks_true: Sequence[np.ndarray], classes_true: Sequence[np.ndarray], masks_pred: Sequence[np.ndarray],
             classes_pred: Sequence[np.ndarray], class_names: Sequence[str] = ()) -> dict[str, Any]:
    """Detection and class scores over a set of images.

    Parameters
    ----------
    masks_true, classes_true
        Ground-truth masks and class per mask id (negative = unknown, left out of class scores).
    masks_pred, classes_pred
        Predicted masks and class per mask id.
    class_names
        Names of the class ids (index 0 = background); no class scores when fewer than two.

    Returns
    -------
    dict
        ``ap50`` (mean over images of cellpose's AP at IoU 0.5), ``error_rate``
        ``(fp + fn) / (tp + fn)`` summed over images, ``tp``, ``fp``, ``fn``, ``n_images``, and with
        classes ``class_accuracy`` and ``per_class`` ``{name: {precision, recall, f1, support}}``.
    """
    mt = [np.asarray(m) for m in masks_true]
    mp = [np.asarray(m) for m in masks_pred]
    out: dict[str, Any] = {"n_images": len(mt)}
    if not mt:
        return out
    ap, tp, fp, fn = metrics.average_precision(mt, mp, threshold=[IOU_THRESHOLD])
    tp_s, fp_s, fn_s = float(tp.sum()), float(fp.sum()), float(fn.sum())
    out.update(ap50=float(np.mean(ap[:, 0])), tp=int(tp_s), fp=int(fp_s), fn=int(fn_s),
               error_rate=float((fp_s + fn_s) / (tp_s + fn_s)) if tp_s + fn_s else 0.0)
    if len(class_names) < 2:
        return out
    k = len(class_names)
    confusion = np.zeros((k, k), np.int64)  # rows: true class, columns: predicted class
    for m_t, c_t, m_p, c_p in zip(mt, classes_true, mp, classes_pred):
        ti, pi = matched_pairs(m_t, m_p)
        true_cls = np.asarray(c_t, np.int64)[ti]
        pred_cls = np.asarray(c_p, np.int64)[pi]
        ok = (true_cls >= 0) & (true_cls < k) & (pred_cls >= 0) & (pred_cls < k)
        np.add.at(confusion, (true_cls[ok], pred_cls[ok]), 1)
    total = confusion.sum()
    out["class_accuracy"] = float(np.trace(confusion) / total) if total else 0.0
    out["confusion"] = confusion.tolist()
    per_class = {}
    for c in range(1, k):
        hit = confusion[c, c]
        predicted, actual = confusion[:, c].sum(), confusion[c, :].sum()
        precision = float(hit / predicted) if predicted else 0.0
        recall = float(hit / actual) if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[class_names[c]] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
    out["per_class"] = per_class
    return out
