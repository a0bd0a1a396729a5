"""Perimeter intensity: mean intensity in a band along each object's edge, per channel.

By default the band is the object's 1-pixel perimeter (its 4-connected boundary pixels).

- ``inner``: the object's own pixels within ``thickness`` of its outside (membrane, cortex).
- ``outer``: background pixels within ``thickness`` of the object, each given to the object
  it is nearest to (pixels of touching objects are never counted).
- ``symmetric``: both together, a band straddling the edge.

Distances are Euclidean, between pixel centres: with ``thickness=1`` the inner band is the
4-connected boundary and the outer band the 4-connected ring outside it. The interior is the
object's pixels not in the band; the band's local background is a percentile of the annulus
``background_gap < d <= background_gap + background_width`` around the object (as in ``basic``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.measure import FrameData, Overlay, Plugin, PluginOutput, grouped, hookimpl, regions


class BandParams(BaseModel):
    """Parameters of the perimeter-intensity band."""

    model_config = ConfigDict(extra="forbid")
    band: Literal["inner", "outer", "symmetric"] = Field(
        "inner", title="Band", description="Inside the edge, outside it, or both.")
    thickness: float = Field(1.0, ge=1, le=50, title="Thickness",
                             description="Band thickness in pixels (distance from the edge); 1 is the 1-pixel "
                                         "perimeter.")
    background_gap: int = Field(2, ge=0, le=100, title="Background gap",
                                description="Pixels skipped between an object and its background annulus.")
    background_width: int = Field(10, ge=1, le=200, title="Background width",
                                  description="Width in pixels of the background annulus.")
    background_percentile: float = Field(25.0, ge=0, le=100, title="Background percentile",
                                         description="Percentile of the annulus pixels used as local background.")


COLUMNS = {
    "band_area": "Pixels in the band.",
    "interior_area": "Pixels of the object not in the band.",
    "band_mean_c{c}": "Mean intensity of the band in channel c.",
    "band_bgsub_c{c}": "Band mean minus the local background (annulus percentile) in channel c.",
    "interior_mean_c{c}": "Mean intensity of the object's interior (its pixels not in the band) in channel c "
                          "(nan when the band covers the whole object).",
    "band_ratio_c{c}": "Band mean divided by the object's mean intensity in channel c.",
    "perimeter_interior_ratio_c{c}": "Band mean divided by the interior mean in channel c.",
}
OVERLAYS = {"band": "The band's pixels, labelled with their object's id."}


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
    in_band = np.zeros(data.labels.size, bool)
    in_band[flat[owner == data.labels.ravel()[flat]]] = True  # band pixels of the object itself (inner part)
    inside = ~in_band[obj_flat]
    ring_g, ring_px = regions.annulus(data.labels, params.background_gap, params.background_width)
    band_count = grouped.counts(owner, n)
    obj_count = grouped.counts(obj, n)
    interior_count = grouped.counts(obj[inside], n)
    ids = data.ids
    out = {"band_area": band_count[ids], "interior_area": interior_count[ids]}
    for c in range(data.n_channels):
        chan = data.image[..., c].ravel()
        band_mean = grouped.means(owner, chan[flat], n, band_count)
        obj_mean = grouped.means(obj, chan[obj_flat], n, obj_count)
        interior_mean = grouped.means(obj[inside], chan[obj_flat[inside]], n, interior_count)
        background = grouped.percentiles(ring_g, chan[ring_px], params.background_percentile, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"band_ratio_c{c}"] = (band_mean / obj_mean)[ids]
            out[f"perimeter_interior_ratio_c{c}"] = (band_mean / interior_mean)[ids]
        out[f"band_mean_c{c}"] = band_mean[ids]
        out[f"band_bgsub_c{c}"] = (band_mean - background)[ids]
        out[f"interior_mean_c{c}"] = interior_mean[ids]
    return PluginOutput(out, overlays=lambda: [Overlay.labels("band", review(data, params))])


def review(data: FrameData, params: BandParams) -> np.ndarray:
    """The band pixels, labelled with their object's id."""
    owner, flat = band_pixels(data.labels, params)
    out = np.zeros(data.labels.size, data.labels.dtype)
    out[flat] = owner
    return out.reshape(data.labels.shape)


PLUGIN = Plugin(
    name="perimeter_intensity",
    title="Perimeter intensity",
    description="Mean intensity per channel in a band along each object's edge (by default its 1-pixel "
                "perimeter; inner, outer or symmetric, of chosen thickness), background-subtracted, and its ratios "
                "to the object's mean and to its interior.",
    params=BandParams,
    columns=COLUMNS,
    compute=compute,
    review=review,
    overlays=OVERLAYS,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The perimeter-intensity plugin."""
    return [PLUGIN]
