"""Track tables: a wide time series (one column group per track) and a long table of positions.

Both start from a measurement table made with the ``tracking`` plugin (columns ``track_id``,
``track_t``, ``track_x``, ``track_y``), plus any measurement columns to spread out.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..errors import ParameterError

TRACK_COLUMNS = ("image", "track_id", "track_t", "track_x", "track_y")


def _check(df: pd.DataFrame, values: Sequence[str] = ()) -> None:
    missing = [c for c in (*TRACK_COLUMNS, *values) if c not in df.columns]
    if missing:
        hint = " (run the 'tracking' plugin)" if any(c.startswith("track_") for c in missing) else ""
        raise ParameterError(f"The measurement table has no column(s) {', '.join(missing)}{hint}.")


def tracks_wide(df: pd.DataFrame, values: Sequence[str] = ()) -> pd.DataFrame:
    """One row per time point ``t``; per track a column group ``track<id>_x``, ``_y`` and ``_<value>``.

    With several images (several time series), groups are prefixed by the image name:
    ``<image>:track<id>_x``. Time points where a track is missing are empty.

    Raises
    ------
    ParameterError
        When the table lacks the track columns or a requested value column.
    """
    _check(df, values)
    tracked = df.dropna(subset=["track_id"])
    fields = {"track_x": "x", "track_y": "y", **{v: v for v in values}}
    wide = tracked.pivot(index="track_t", columns=["image", "track_id"], values=list(fields))
    several = tracked["image"].nunique() > 1
    groups = sorted({(img, int(tid)) for _, img, tid in wide.columns})
    ordered = [(field, img, tid) for img, tid in groups for field in fields]
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(ordered, names=wide.columns.names))
    wide.columns = [f"{img + ':' if several else ''}track{tid}_{fields[field]}" for field, img, tid in ordered]
    wide.index = wide.index.astype(int)
    return wide.rename_axis("t").reset_index()


def track_positions(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of positions sorted by track and time.

    Columns ``image, track_id, t, frame, mask_id, class_name, x, y``, then ``status`` and ``cost``
    (how each observation joined its track) when the table has them.
    """
    _check(df)
    cols = [c for c in ("image", "track_id", "track_t", "frame", "mask_id", "class_name", "track_x", "track_y",
                        "track_status", "track_cost") if c in df.columns]
    out = df.dropna(subset=["track_id"])[cols].rename(columns={"track_t": "t", "track_x": "x", "track_y": "y",
                                                               "track_status": "status", "track_cost": "cost"})
    out["track_id"] = out["track_id"].astype(int)
    return out.sort_values(["image", "track_id", "t"]).reset_index(drop=True)
