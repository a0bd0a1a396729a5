"""Review mode of the Analyzer: the open prediction's objects from least to most sure, one at a time.

Each object is selected and highlighted on the canvas; the user accepts it (A, remembered per
object in the ``_pred.npy``), deletes it (X), or fixes it with the usual tools (an edited object
is the user's own and leaves the queue), and N moves on. The order comes from
:func:`mcp_core.confidence.review_order` by a chosen score. The canvas can outline every object
in the colour of its confidence.
"""

from __future__ import annotations

import math

import numpy as np
from nicegui import background_tasks, ui

from mcp_core.confidence import SCORES, mark_reviewed, review_order, scores_for
from mcp_core.labels import LabelSet
from mcp_core.measure import Overlay

from .overlays import canvas_layers
from .workspace import Workspace

#: Outline colours by overall confidence: below 0.5, below 0.8, and the rest.
CONFIDENCE_BANDS = ((0.0, 0.5, "#ff4d4d"), (0.5, 0.8, "#ffb000"), (0.8, 1.01, "#39d353"))


def confidence_layers(labels: LabelSet) -> list[dict]:
    """Canvas layers outlining each scored object in the colour of its confidence band."""
    ids = labels.ids
    conf = scores_for(labels.confidence, ids).get("confidence", np.full(len(ids), np.nan))
    out = []
    for low, high, color in CONFIDENCE_BANDS:
        chosen = ids[(conf >= low) & (conf < high)]
        if len(chosen):
            regions = np.where(np.isin(labels.masks, chosen), labels.masks, 0)
            out += canvas_layers([Overlay.outlines("confidence", regions)], color)
    return out


class ReviewPanel:
    """An expansion with the review queue of the open frame, and its keys."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.queue: list[int] = []
        self.current: int | None = None
        with ui.expansion("Review (least sure first)", icon="rule").classes("w-full").mark("review"):
            self.score = ui.select(list(SCORES), value="confidence", label="Score",
                                   on_change=lambda: self.restart()).props("dense").classes("w-full")
            self.info = ui.label("").classes("text-xs").mark("review-info")
            self.colour = ui.checkbox("Colour by confidence (red < 0.5 < orange < 0.8 < green)",
                                      on_change=lambda: self.draw()).props("dense").classes("text-xs").mark(
                "review-colour")
            with ui.row().classes("gap-1"):
                ui.button("Next (N)", on_click=self.next).props("dense no-caps").mark("review-next")
                ui.button("Accept (A)", on_click=self.accept).props("dense no-caps color=positive").mark(
                    "review-accept")
                ui.button("Delete (X)", on_click=self.delete).props("dense no-caps color=negative").mark(
                    "review-delete")
        ws.on_open.append(self.restart)
        ws.on_open.append(lambda: background_tasks.create(self.draw()) if self.colour.value else None)
        ui.keyboard(on_key=self._on_key, ignore=["input", "select", "button", "textarea"])

    def restart(self) -> None:
        """Build the queue of the open frame and show its first object."""
        labels = self.ws.editor.labels
        self.queue = [] if labels is None else [int(i) for i in review_order(labels.confidence, labels.ids,
                                                                               self.score.value)]
        self.current = None
        self.next()

    def next(self) -> None:
        """Show the next object of the queue (objects deleted or edited meanwhile are skipped)."""
        labels = self.ws.editor.labels
        self.current = None
        while self.queue and labels is not None:
            candidate = self.queue.pop(0)
            values = scores_for(labels.confidence, [candidate])
            value = values.get(self.score.value, [math.nan])[0]
            if candidate in set(labels.ids.tolist()) and math.isfinite(value):
                self.current = candidate
                break
        if self.current is None:
            self.info.text = "Nothing left to review here." if labels is not None and labels.confidence else \
                "This frame has no model scores (run a model on it first)."
            return
        self.info.text = f"Object {self.current}: {self.score.value} {value:.3f} · {len(self.queue)} more after it"
        if self.ws.canvas is not None:
            self.ws.canvas.select([self.current])
            self.ws.canvas.highlight(self.current)

    def accept(self) -> None:
        """Remember the shown object as reviewed (saved with the prediction) and move on."""
        labels = self.ws.editor.labels
        if self.current is None or labels is None or labels.confidence is None:
            return
        mark_reviewed(labels.confidence, self.current, labels.max_id + 1)
        self.ws.editor.edits += 1
        self.ws.schedule_save()
        self.next()

    def delete(self) -> None:
        """Delete the shown object (undoable) and move on."""
        if self.current is None:
            return
        shown = self.current
        self.ws.edit(lambda: self.ws.editor.delete([shown]))
        self.next()

    async def draw(self) -> None:
        """Outline the objects by confidence on the canvas (or clear the outlines)."""
        labels = self.ws.editor.labels
        payload = confidence_layers(labels) if self.colour.value and labels is not None else []
        if self.ws.canvas is not None:
            await self.ws.canvas.run_method("setPluginLayers", payload, timeout=30)

    def _on_key(self, e) -> None:
        if not e.action.keydown or e.action.repeat or e.modifiers.ctrl or e.modifiers.meta:
            return
        action = {"n": self.next, "a": self.accept, "x": self.delete}.get(str(e.key.name).lower())
        if action is not None:
            action()
