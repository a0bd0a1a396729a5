"""Reading the ``_pred.npy`` files a server's batch jobs wrote, without general unpickling.

A ``_pred.npy`` is a pickled dict (the upstream cellpose layout). The server never calls
``np.load(allow_pickle=True)``: it reads through :mod:`mcp_core.labels.npyfile`, whose unpickler
builds nothing but numpy arrays, dtypes and scalars and plain containers, so a crafted file
cannot run code.
Only the arrays a client needs are sent on, pickle-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mcp_core.errors import LabelFileError
from mcp_core.labels.files import confidence_scores, majority_class
from mcp_core.labels.npyfile import read_label_dict
from mcp_core.params import SegmentResult


def read_prediction(path: str | os.PathLike) -> dict[str, Any]:
    """The dict of a ``_pred.npy``/``_seg.npy`` file, unpickled with numpy types only (messages name the file only).

    Raises
    ------
    LabelFileError
        When the file is not an ``.npy`` holding one dict, or names anything but numpy types.
    """
    return read_label_dict(path, shown=Path(path).name)


def prediction_result(path: str | os.PathLike, image: str = "", frame: str = "") -> SegmentResult:
    """The masks, classes and per-object confidence of a prediction file as a :class:`SegmentResult` (no flows)."""
    data = read_prediction(path)
    masks = np.asarray(data["masks"])
    if masks.dtype.kind not in "ui" or masks.ndim != 2:
        raise LabelFileError(f"{Path(path).name} holds masks of {masks.dtype} {masks.shape}, not a 2-D label image.")
    classes = data.get("classes")
    if classes is None and "classes_map" in data:
        classes = majority_class(masks, np.asarray(data["classes_map"]))
    classes = np.asarray(classes if classes is not None else np.zeros(int(masks.max(initial=0)) + 1), dtype=np.uint16)
    cmap = data.get("classes_map")
    return SegmentResult(masks=masks, classes=classes, class_names=[str(n) for n in data.get("class_names") or []],
                         class_map=None if cmap is None else np.asarray(cmap, dtype=np.uint16),
                         diameter=float(data.get("diameter") or 0.0), image=image, frame=frame,
                         class_colors=[str(c) for c in data.get("class_colors") or []],
                         confidence=confidence_scores(data.get("confidence")) or {})
