"""Perimeter intensity: mean intensity in a band along each object's edge, per channel.

- ``inner``: the object's own pixels within ``thickness`` of its outside (membrane, cortex).
- ``outer``: background pixels within ``thickness`` of the object, each given to the object
  it is nearest to (pixels of touching objects are never counted).
- ``symmetric``: both together, a band straddling the edge.

Distances are Euclidean, between pixel centres: with ``thickness=1`` the inner band is the
4-connected boundary and the outer band the 4-connected ring outside it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.measure import FrameData, Plugin, grouped, hookimpl, regions


class BandParams(BaseModel):
    """Parameters of the perimeter-intensity band."""

    model_config = ConfigDict(extra="forbid")
    band: Literal["inner", "outer", "symmetric"] = Field(
        "inner", title="Band", description="Inside the edge, outside it, or both.")
    thickness: float = Field(2.0, ge=1, le=50, title="Thickness",
                             description="Band thickness in pixels (distance from the edge).")


COLUMNS = {
    "band_area": "Pixels in the band.",
    "band_mean_c{c}": "Mean intensity of the band in channel c.",
    "band_ratio_c{c}": "Band mean divided by the object's mean intensity in channel c.",
}


def band_pixels(labels: np.ndarray, params: BandParams) -> tuple[np.ndarray, np.ndarray]:
    """Owner label and flat index of the band's pixels."""
    parts = []
    if params.band in ("inner", "symmetric"):
        parts.append(regions.inner_band(labels, params.thickness))
    if params.band in ("outer", "symmetric"):
        parts.append(regions.annulus(labels, 0, params.thickness))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def compute(data: FrameData, params: BandParams) -> dict[str, np.ndarray]:
    """Band area and per-channel band mean and band/object ratio (rows in the order of ``data.ids``)."""
    n = int(data.labels.max(initial=0)) + 1
    owner, flat = band_pixels(data.labels, params)
    obj, obj_flat = regions.foreground(data.labels)
    band_count = grouped.counts(owner, n)
    obj_count = grouped.counts(obj, n)
    out = {"band_area": band_count[data.ids]}
    for c in range(data.n_channels):
        chan = data.image[..., c].ravel()
        band_mean = grouped.means(owner, chan[flat], n, band_count)
        obj_mean = grouped.means(obj, chan[obj_flat], n, obj_count)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = band_mean / obj_mean
        out[f"band_mean_c{c}"] = band_mean[data.ids]
        out[f"band_ratio_c{c}"] = ratio[data.ids]
    return out


def review(data: FrameData, params: BandParams) -> np.ndarray:
    """The band pixels, labelled with their object's id."""
    owner, flat = band_pixels(data.labels, params)
    out = np.zeros(data.labels.size, data.labels.dtype)
    out[flat] = owner
    return out.reshape(data.labels.shape)


PLUGIN = Plugin(
    name="perimeter_intensity",
    title="Perimeter intensity",
    description="Mean intensity per channel in an inner, outer or symmetric band of chosen thickness along each "
                "object's edge, and its ratio to the object's mean.",
    params=BandParams,
    columns=COLUMNS,
    compute=compute,
    review=review,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The perimeter-intensity plugin."""
    return [PLUGIN]
