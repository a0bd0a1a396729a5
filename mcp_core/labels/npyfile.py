"""The one reader of object ``.npy`` files (``_seg.npy``, ``_pred.npy``): pickles that cannot run code.

Upstream cellpose stores labels as a pickled dict inside an ``.npy``. ``np.load(allow_pickle=True)``
would run whatever the pickle names, so a downloaded folder could execute code when opened.
Here the ``.npy`` header is read by numpy and the payload by an unpickler that can build numpy
arrays, dtypes and scalars and the plain containers (dict, list, tuple, set, str, bytes, numbers,
None) and nothing else; anything else raises :class:`~mcp_core.errors.LabelFileError`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabelFileError

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
#: (module, name) pairs a label pickle may name: numpy 1 and 2 spellings of what ``np.save`` writes.
ALLOWED_GLOBALS = frozenset(
    {(mod, name) for mod in _NUMPY_CORE for name in ("_reconstruct", "scalar", "_frombuffer")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("builtins", n) for n in ("set", "frozenset", "complex", "bytearray")}
    | {("_codecs", "encode")}  # how protocol-2 pickles spell bytes
)


class _LabelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # how protocol-2 pickles spell builtins
            module = "builtins"
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy >= 2 pickles some dtypes by class
            found = getattr(np.dtypes, name, None)
            if isinstance(found, type) and issubclass(found, np.dtype):
                return found
        raise pickle.UnpicklingError(f"it asks to build {module}.{name}, which a label file may not contain")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it refers to external objects, which a label file may not contain")


def read_npy(path: str | os.PathLike, shown: str | None = None) -> Any:
    """The content of an ``.npy`` file: a plain array, or an object array unpickled safely.

    Parameters
    ----------
    path
        The file.
    shown
        How messages name the file (default: the path as given).

    Raises
    ------
    LabelFileError
        When the file is missing, not an ``.npy`` (an NPZ archive included), truncated, or its
        pickle names anything but numpy arrays, dtypes, scalars and builtin containers.
    """
    path = Path(path)
    shown = str(path) if shown is None else shown
    try:
        with open(path, "rb") as fh:
            start = fh.read(6)
            if start.startswith(b"PK\x03\x04"):
                raise LabelFileError(f"{shown} is a ZIP/NPZ archive, not an .npy file; refused.")
            if start != b"\x93NUMPY":
                raise LabelFileError(f"{shown} is not an .npy file.")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            shape, _order, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(fh))
            if not dtype.hasobject:
                fh.seek(0)
                return np.lib.format.read_array(fh, allow_pickle=False)
            value = _LabelUnpickler(fh).load()
    except LabelFileError:
        raise
    except pickle.UnpicklingError as exc:
        raise LabelFileError(f"{shown} was refused: {exc}.") from exc
    except OSError as exc:
        raise LabelFileError(f"{shown} cannot be read: {exc.strerror or exc}.") from exc
    except Exception as exc:  # a damaged pickle can fail in many ways (EOFError, TypeError, MemoryError...)
        raise LabelFileError(f"{shown} is damaged ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape):
        raise LabelFileError(f"{shown} is damaged: its pickle does not hold the array its header declares.")
    return value


def read_label_dict(path: str | os.PathLike, shown: str | None = None) -> dict[str, Any]:
    """The dict of a ``_seg.npy``/``_pred.npy`` file (ours or upstream cellpose's), read with :func:`read_npy`.

    Raises
    ------
    LabelFileError
        As :func:`read_npy`, or when the file does not hold one dict with a ``masks`` entry.
    """
    shown = str(path) if shown is None else shown
    value = read_npy(path, shown)
    if value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict) or "masks" not in value:
        raise LabelFileError(f"{shown} is not a cellpose label file (no 'masks' entry).")
    return value
