"""Prediction files: a :class:`~mcp_core.params.SegmentResult` written as ``_pred.npy``.

Torch- and cellpose-free, so the remote client writes the predictions it fetches with the same code as
local segmentation.
"""

from __future__ import annotations

import os
from pathlib import Path

from .filenames import label_path
from .labels import LabelSet, save_labels
from .labels.files import gui_flows
from .params import SegmentParams, SegmentResult


def to_labelset(result: SegmentResult) -> LabelSet:
    """A segmentation result as a label set (flows kept in the upstream GUI's layout when present)."""
    ls = LabelSet(result.masks, result.classes, list(result.class_names), list(result.class_colors),
                  confidence=dict(result.confidence) or None)
    if result.flows is not None and result.cellprob is not None:
        ls.flows = gui_flows(result.flows, result.cellprob)
    ls.diameter = result.diameter
    return ls


def save_prediction(result: SegmentResult, image_path: str | os.PathLike, frame: str = "",
                    folder: str | os.PathLike | None = None, params: SegmentParams | None = None) -> Path:
    """Write a result as ``<stem>_pred.npy`` (``<stem>__<frame>_pred.npy``) beside the image or in *folder*."""
    ls = to_labelset(result)
    if params is not None:
        ls.flow_threshold, ls.cellprob_threshold = params.flow_threshold, params.cellprob_threshold
    path = label_path(image_path, frame, "pred")
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / path.name
    return save_labels(path, ls, image_path=image_path)
