"""Per-class summary: count, density and the mean/median/std of each measurement per class per image.

A table plugin: it runs after the others on the per-object table. Every class seen in the
run gets a row in every measured image (or frame), with count 0 where it is absent, so
densities can be compared across images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.errors import ParameterError
from mcp_core.measure import ID_COLUMNS, Plugin, hookimpl

_NOT_MEASUREMENTS = ("bbox_",)


class SummaryParams(BaseModel):
    """Parameters of the per-class summary."""

    model_config = ConfigDict(extra="forbid")
    per_frame: bool = Field(True, title="Per frame",
                            description="One row per class per frame (off: per image, pooling its frames).")
    mean: bool = Field(True, title="Mean", description="Report the mean of each measurement.")
    median: bool = Field(True, title="Median", description="Report the median of each measurement.")
    std: bool = Field(False, title="Standard deviation", description="Report the standard deviation of each "
                                                                     "measurement.")
    measurements: str = Field("", title="Measurements",
                              description="Columns to summarise, comma-separated (empty: every numeric column but "
                                          "ids and bounding boxes).")


COLUMNS = {
    "image": "Image file name.",
    "frame": "Frame id ('' when frames are pooled or the image has one frame).",
    "class_id": "Class id.",
    "class_name": "Class name.",
    "count": "Objects of the class.",
    "density_per_mpx": "Objects per million pixels of image.",
    "density_per_mm2": "Objects per mm² (nan when the pixel size is unknown).",
    "{measurement}_mean": "Mean of a measurement over the class's objects.",
    "{measurement}_median": "Median of a measurement over the class's objects.",
    "{measurement}_std": "Standard deviation of a measurement over the class's objects.",
}


def measurement_columns(objects: pd.DataFrame, params: SummaryParams) -> list[str]:
    """The columns to summarise."""
    if params.measurements.strip():
        names = [c.strip() for c in params.measurements.split(",") if c.strip()]
        missing = [c for c in names if c not in objects.columns]
        if missing:
            raise ParameterError(f"measurements {', '.join(missing)} are not in the table "
                                 f"(columns: {', '.join(map(str, objects.columns))}).")
        return names
    return [c for c in objects.columns
            if c not in ID_COLUMNS and not c.endswith("_id") and not c.startswith(_NOT_MEASUREMENTS)
            and pd.api.types.is_numeric_dtype(objects[c]) and not pd.api.types.is_bool_dtype(objects[c])]


def compute(objects: pd.DataFrame, frames: pd.DataFrame, params: SummaryParams) -> pd.DataFrame:
    """The summary table: one row per (image[, frame], class)."""
    cols = measurement_columns(objects, params)
    stats = [s for s in ("mean", "median", "std") if getattr(params, s)]
    frames = frames.copy()
    if not params.per_frame:
        frames["frame"] = ""
    objects = objects.assign(frame="") if not params.per_frame else objects
    frames["pixels"] = frames["height"] * frames["width"]
    frames["mm2"] = frames["pixels"] * frames["pixel_size_y"] * frames["pixel_size_x"] / 1e6
    places = frames.groupby(["image", "frame"], sort=False)[["pixels", "mm2"]].sum(min_count=1).reset_index()
    classes = (objects[["class_id", "class_name"]].drop_duplicates("class_id").sort_values("class_id")
               if len(objects) else pd.DataFrame({"class_id": pd.Series(dtype=np.int64),
                                                  "class_name": pd.Series(dtype=object)}))
    grid = places.merge(classes, how="cross")
    keys = ["image", "frame", "class_id"]
    grouped = objects.groupby(keys, sort=False)
    table = grouped.size().rename("count").reset_index()
    for stat in stats:
        values = grouped[cols].agg(stat) if cols else pd.DataFrame(index=table.set_index(keys).index)
        values.columns = [f"{c}_{stat}" for c in cols]
        table = table.merge(values.reset_index(), on=keys, how="left")
    out = grid.merge(table, on=keys, how="left")
    out["count"] = out["count"].fillna(0).astype(np.int64)
    out["density_per_mpx"] = out["count"] / out["pixels"] * 1e6
    out["density_per_mm2"] = out["count"] / out["mm2"]
    stat_cols = [f"{c}_{s}" for s in stats for c in cols]
    return out[["image", "frame", "class_id", "class_name", "count", "density_per_mpx", "density_per_mm2",
                *stat_cols]].reset_index(drop=True)


PLUGIN = Plugin(
    name="class_summary",
    title="Per-class summary",
    description="Per class and image (or frame): object count, density, and the mean/median/std of every "
                "measurement of the run.",
    params=SummaryParams,
    columns=COLUMNS,
    compute=compute,
    scope="table",
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The per-class summary plugin."""
    return [PLUGIN]
