"""Measurement plugins' overlay layers on the Analyzer canvas, with one check box per plugin.

Layers come from :func:`mcp_core.measure.run_labels` (``result.overlays``); points, lines and
outlines travel as coordinate lists, a label layer as a small translucent PNG data URL, so no
array goes into element props. The canvas draws them over the masks until the next image loads.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from nicegui import ui
from PIL import Image

from mcp_core.measure import Overlay

#: Stroke colour per plugin, in the order plugins first show layers.
PLUGIN_COLORS = ("#ffd000", "#00e5ff", "#ff4fd8", "#7cfc00", "#ff8c00", "#ffffff")
#: Fill colours of label layers, by id modulo their number; alpha 150 of 255.
LABEL_COLORS = np.array([[255, 208, 0], [0, 229, 255], [255, 79, 216], [124, 252, 0], [255, 140, 0], [160, 120, 255],
                         [255, 80, 80], [80, 255, 170]], np.uint8)
LABEL_ALPHA = 150


def label_png(labels: np.ndarray) -> str:
    """A ``data:image/png`` URL of an RGBA image: each id in a colour of :data:`LABEL_COLORS`, 0 transparent."""
    labels = np.asarray(labels)
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    on = labels > 0
    rgba[on, :3] = LABEL_COLORS[labels[on] % len(LABEL_COLORS)]
    rgba[on, 3] = LABEL_ALPHA
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def canvas_layers(layers: Sequence[Overlay], color: str) -> list[dict]:
    """What ``label_canvas.js``'s ``setPluginLayers`` draws for one plugin's layers, in one stroke colour."""
    out = []
    for layer in layers:
        if layer.kind == "labels":
            data = label_png(layer.data)
        elif layer.kind == "points":
            data = np.round(layer.data, 2).tolist()
        else:
            data = [np.round(path, 2).tolist() for path in layer.data]
        out.append({"kind": layer.kind, "color": color, "data": data})
    return out


class OverlayToggles:
    """Check boxes, one per plugin with layers on the shown frame; the canvas draws the checked plugins' layers.

    The layers of the last measurement run are kept, so moving to another frame shows its own
    layers (e.g. the track trails of a folder run) with the same choices.
    """

    def __init__(self, canvas_of) -> None:
        """*canvas_of* returns the page's :class:`~mcp_app.canvas.LabelCanvas` (it may be rebuilt)."""
        self.canvas_of = canvas_of
        self.store: dict[tuple[str, str, str], list[Overlay]] = {}
        self.enabled: dict[str, bool] = {}
        self.layers: dict[str, list[Overlay]] = {}
        self.row = ui.row().classes("items-center gap-1")

    def keep(self, overlays: Mapping[tuple[str, str, str], list[Overlay]]) -> None:
        """Keep a run's layers ``{(image, frame, plugin): layers}``; plugins seen before keep their choice."""
        self.store = dict(overlays)
        self.enabled = {plugin: self.enabled.get(plugin, True) for _, _, plugin in self.store}

    async def show(self, image: str, frame: str) -> None:
        """Offer and draw the kept layers of one frame (nothing when the run had none for it)."""
        shown_before = bool(self.layers)
        self.layers = {plugin: layers for (i, f, plugin), layers in self.store.items() if (i, f) == (image, frame)}
        self.row.clear()
        with self.row:
            if self.layers:
                ui.label("Overlays:").classes("text-xs")
            for plugin in self.layers:
                ui.checkbox(plugin, value=self.enabled[plugin],
                            on_change=lambda e, p=plugin: self.toggle(p, e.value)).props("dense").classes(
                    "text-xs").mark(f"overlay-{plugin}")
        if self.layers or shown_before:  # a newly loaded image starts without layers
            await self.redraw()

    async def toggle(self, plugin: str, value: bool) -> None:
        self.enabled[plugin] = value
        await self.redraw()

    async def redraw(self) -> None:
        """Send the checked plugins' layers to the canvas."""
        payload = []
        for k, (plugin, layers) in enumerate(self.layers.items()):
            if self.enabled[plugin]:
                payload += canvas_layers(layers, PLUGIN_COLORS[k % len(PLUGIN_COLORS)])
        await self.canvas_of().run_method("setPluginLayers", payload, timeout=30)
