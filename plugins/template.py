"""Template measurement plugin: copy this file, rename things, keep the structure.

It measures, per object, the fraction of its pixels brighter than a threshold in one
channel. It is not registered (no entry point names it); check it with::

    multicellpose plugins validate plugins/template.py

See ``plugins/README.md`` for the contract and how to register your own package.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.errors import ParameterError
from mcp_core.measure import FrameData, Overlay, Plugin, PluginOutput, grouped, hookimpl, regions


# 1. Parameters: a pydantic model. Every field has a default, bounds or choices where they
#    apply, and a description (the help text of the form the app builds from it).
class BrightFractionParams(BaseModel):
    """Parameters of the bright-fraction measurement."""

    model_config = ConfigDict(extra="forbid")  # a misspelt parameter is an error, not ignored
    channel: int = Field(0, ge=0, le=63, title="Channel", description="Channel to threshold.")
    threshold: float = Field(1000.0, ge=0, title="Threshold",
                             description="Pixels above this intensity count as bright.")


# 2. Columns: every column compute() returns, with a one-line description. "{c}" in a name
#    stands for each channel index (mean_c{c} -> mean_c0, mean_c1, ...).
COLUMNS = {
    "bright_fraction": "Fraction of the object's pixels above the threshold in the chosen channel.",
    "bright_area": "Pixels above the threshold.",
}
#    Optional: overlay layers drawn over the masks in the Analyzer, {layer name: description}.
OVERLAYS = {"bright": "The bright pixels, labelled with their object's id."}


# 3. The computation: one row per object, in the order of data.ids. Work on all objects at
#    once (bincount, grouped reductions); never loop over objects scanning the whole image.
#    Return the columns (a dict), or a PluginOutput with overlays (and extra tables) too.
def compute(data: FrameData, params: BrightFractionParams) -> PluginOutput:
    """Bright-pixel fraction and area per object, and the bright pixels as an overlay."""
    if params.channel >= data.n_channels:
        raise ParameterError(f"channel {params.channel} does not exist: the image has {data.n_channels} channel(s).")
    n = int(data.labels.max(initial=0)) + 1
    owner, flat = regions.foreground(data.labels)  # label and flat index of every object pixel
    bright = data.image[..., params.channel].ravel()[flat] > params.threshold
    area = grouped.counts(owner, n)
    bright_area = grouped.counts(owner[bright], n)
    ids = data.ids
    columns = {"bright_fraction": bright_area[ids] / np.maximum(area[ids], 1), "bright_area": bright_area[ids]}
    layer = np.zeros(data.labels.size, np.int64)
    layer[flat[bright]] = owner[bright]
    return PluginOutput(columns, overlays=[Overlay.labels("bright", layer.reshape(data.labels.shape))])


# 4. The declaration.
PLUGIN = Plugin(
    name="bright_fraction",
    title="Bright fraction (template)",
    description="Fraction of each object's pixels above an intensity threshold in one channel.",
    params=BrightFractionParams,
    columns=COLUMNS,
    compute=compute,
    overlays=OVERLAYS,
)


# 5. The hook the host calls to find the plugin.
@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The template plugin."""
    return [PLUGIN]
