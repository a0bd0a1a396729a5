"""Model confidence: the per-object scores stored with predictions (``_pred.npy``).

Segmentation stores, for every predicted object, how sure the model was (see
:mod:`mcp_core.confidence`); this plugin puts them in the measurement table. Objects without a
stored score (hand-drawn or edited since the prediction, or labels from ``_seg.npy``) get ``nan``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from mcp_core.confidence import SCORES, scores_for
from mcp_core.measure import FrameData, Plugin, hookimpl


class ConfidenceParams(BaseModel):
    """No parameters: the scores are what the model said."""

    model_config = ConfigDict(extra="forbid")


COLUMNS = {
    "confidence": "Overall confidence in [0, 1] (1 = sure): one minus the mean of the doubt terms below.",
    "cellprob_mean": "Mean cell probability over the object's pixels.",
    "flow_error": "Cellpose's flow error: predicted flows vs flows recomputed from the mask (low = consistent).",
    "class_margin": "Mean class probabilities over the object: best minus runner-up (multi-class models).",
    "class_entropy": "Entropy of those class probabilities over log(number of classes), 0 = sure, 1 = undecided.",
}


def compute(data: FrameData, params: ConfidenceParams) -> dict[str, np.ndarray]:
    """The stored scores of ``data.ids`` (``nan`` where none is stored)."""
    found = scores_for(data.scores, data.ids)
    return {name: found.get(name, np.full(len(data.ids), np.nan)) for name in SCORES}


PLUGIN = Plugin(
    name="confidence",
    title="Model confidence",
    description="How sure the model was of each predicted object: cell probability, flow error, class margin "
                "and entropy, and an overall confidence (sort by it to review the doubtful objects first).",
    params=ConfidenceParams,
    columns=COLUMNS,
    compute=compute,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The model-confidence plugin."""
    return [PLUGIN]
