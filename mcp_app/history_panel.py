"""The open image's annotation timeline (:mod:`mcp_core.history`): preview a version over the canvas, restore it.

A preview outlines what restoring the version would change: green, objects it would bring back;
red, objects it would remove; orange, objects it would reshape or re-class.
"""

from __future__ import annotations

import numpy as np
from nicegui import run, ui

from mcp_core import history
from mcp_core.measure import Overlay

from .overlays import canvas_layers
from .workspace import Workspace

#: How many of the newest versions are listed.
SHOWN = 15
PREVIEW_COLORS = {"back": "#39d353", "gone": "#ff4d4d", "changed": "#ff9f1a"}


def preview_layers(current, version) -> tuple[list[dict], str]:
    """Canvas layers and a sentence saying what restoring *version* over *current* labels would change."""
    diff = history.changes(current, version)
    changed = np.union1d(diff.edited, diff.reclassed)
    payload = []
    for key, source, ids in (("back", version, diff.added), ("gone", current, diff.deleted),
                             ("changed", version, changed)):
        if len(ids):
            regions = np.where(np.isin(source.masks, ids), source.masks, 0)
            payload += canvas_layers([Overlay.outlines(key, regions)], PREVIEW_COLORS[key])
    parts = [f"{verb} {len(ids)}" for verb, ids in (("brings back", diff.added), ("removes", diff.deleted),
                                                     ("reshapes or re-classes", changed)) if len(ids)]
    return payload, ("Restoring it " + ", ".join(parts) + "." if parts else "It is what the canvas shows.")


class HistoryPanel:
    """An expansion listing the versions of the open image's label file, newest first."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        with ui.expansion("History", icon="history", on_value_change=lambda e: self.refresh() if e.value else None
                          ).classes("w-full").mark("history") as self.expansion:
            self.note = ui.label("").classes("text-xs text-gray-600").mark("history-note")
            self.rows = ui.column().classes("w-full gap-0")
        ws.on_open.append(self.refresh)

    def refresh(self) -> None:
        """List the versions (called when the panel opens and when an image is opened)."""
        self.rows.clear()
        path = self.ws.editor.label_file
        found = history.versions(path) if path is not None else []
        self.note.text = "" if found else "No saved versions yet: every save of the labels adds one."
        with self.rows:
            for v in reversed(found[-SHOWN:]):
                with ui.row().classes("w-full items-center gap-1 no-wrap"):
                    ui.label(f"{v.n}").classes("text-xs font-bold w-5")
                    ui.label(f"{v.when[5:16]} {v.author}: {v.action}").classes("text-xs grow").tooltip(
                        v.source or v.action)
                    ui.button(icon="visibility", on_click=lambda n=v.n: self.preview(n)).props(
                        "flat dense size=sm").tooltip("Preview over the canvas").mark(f"history-preview-{v.n}")
                    ui.button(icon="restore", on_click=lambda n=v.n: self.restore(n)).props(
                        "flat dense size=sm").tooltip("Restore (saved as a new version)").mark(f"history-restore-{v.n}")
            if found:
                ui.button("Clear preview", on_click=self.clear).props("flat dense no-caps size=sm")

    async def preview(self, n: int) -> None:
        path = self.ws.editor.label_file
        try:
            version = await run.io_bound(history.load_version, path, n)
        except Exception as exc:
            ui.notify(f"Cannot read version {n}: {exc}", type="negative", multi_line=True)
            return
        payload, sentence = preview_layers(self.ws.editor.labels, version)
        self.note.text = f"Version {n}: {sentence}"
        await self.ws.canvas.run_method("setPluginLayers", payload, timeout=30)

    async def clear(self) -> None:
        self.note.text = ""
        await self.ws.canvas.run_method("setPluginLayers", [], timeout=30)

    async def restore(self, n: int) -> None:
        """Save pending edits (they become a version too), write version *n* back, and show it."""
        if not await self.ws.flush():
            return
        path, image = self.ws.editor.label_file, self.ws.editor.item.path
        try:
            await run.io_bound(history.restore, path, n, image)
        except Exception as exc:
            ui.notify(f"Cannot restore version {n}: {exc}", type="negative", multi_line=True)
            return
        await self.ws.reload_theirs()
        await self.clear()
        self.ws.set_status(f"Restored version {n}")
