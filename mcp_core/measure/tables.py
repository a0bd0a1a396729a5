"""Reading and writing measurement tables: CSV always, Parquet when ``pyarrow`` is installed."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write, atomic_write_text
from ..errors import ParameterError

TEXT_COLUMNS = ("image", "frame", "class_name", "labels_file")


def parquet_available() -> bool:
    """Whether Parquet files can be written (``pyarrow`` is installed)."""
    return importlib.util.find_spec("pyarrow") is not None


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write *df* atomically as CSV, or as Parquet when *path* ends in ``.parquet``.

    Raises
    ------
    ParameterError
        Parquet asked for without ``pyarrow``, or an unknown extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if not parquet_available():
            raise ParameterError(f"Cannot write {path}: Parquet needs pyarrow (pip install pyarrow); "
                                 f"write a .csv file instead.")
        with atomic_write(path) as fh:
            df.to_parquet(fh, index=False)
    elif suffix in (".csv", ".txt"):
        atomic_write_text(path, df.to_csv(index=False))
    else:
        raise ParameterError(f"Cannot write {path}: use a .csv or .parquet file name.")
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (empty frame ids stay empty strings).

    Raises
    ------
    ParameterError
        A missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"Measurement table {path} does not exist.")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    except Exception as exc:
        raise ParameterError(f"Cannot read measurement table {path}: {exc}.") from exc
    for c in TEXT_COLUMNS:
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df
