"""Reading the ``_pred.npy`` files a server's batch jobs wrote, without general unpickling.

A ``_pred.npy`` is a pickled dict (the upstream cellpose layout). The server never calls
``np.load(allow_pickle=True)``: it reads the ``.npy`` header itself and unpickles the payload
with an unpickler that can build nothing but numpy arrays, dtypes and scalars and the plain
containers pickle builds natively (dict, list, str, numbers), so a crafted file cannot run code.
Only the arrays a client needs are sent on, pickle-free.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mcp_core.errors import LabelFileError
from mcp_core.labels.files import majority_class
from mcp_core.params import SegmentResult

#: The only globals a prediction pickle may name (numpy 1 and 2 module paths).
_ALLOWED = {(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")}
_ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype")}
_ALLOWED |= {("numpy.dtypes", n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "UInt16DType",
                                            "UInt32DType", "UInt8DType", "BoolDType", "StrDType", "ObjectDType")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a prediction file")


def read_prediction(path: str | os.PathLike) -> dict[str, Any]:
    """The dict of a ``_pred.npy``/``_seg.npy`` file, unpickled with numpy types only.

    Raises
    ------
    LabelFileError
        When the file is not an ``.npy`` holding one dict, or names anything but numpy types.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            _shape, _order, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(fh))
            if not dtype.hasobject:
                raise LabelFileError(f"{path.name} is a plain array, not a prediction file.")
            value = _ArrayUnpickler(fh).load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as exc:
        raise LabelFileError(f"{path.name} is not a readable prediction file: {exc}.") from exc
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict) or "masks" not in value:
        raise LabelFileError(f"{path.name} is not a prediction file (no 'masks' entry).")
    return value


def prediction_result(path: str | os.PathLike, image: str = "", frame: str = "") -> SegmentResult:
    """The masks and classes of a prediction file as a :class:`SegmentResult` (no flows)."""
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
                         class_colors=[str(c) for c in data.get("class_colors") or []])
