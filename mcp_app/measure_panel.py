"""The Analyzer's measurement panel: choose plugins, fill their forms, run; the results (table, plots, extra
tables) go to a panel of their own under the canvas (:meth:`MeasurePanel.build_results`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from nicegui import background_tasks, run, ui

from mcp_core.atomic import atomic_write_bytes
from mcp_core.measure import list_plugins, run_labels, run_measurements
from mcp_core.measure.runner import second_labels_for

from .forms import schema_form
from .overlays import OverlayToggles
from .project import Item
from .results_view import MAX_TABLE_ROWS, ResultsView
from .workspace import Workspace


class MeasurePanel:
    """Plugins with schema-generated forms, run on the current image or the whole folder."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.measured_kind = ws.editor.kind  # the label files of the table shown ("seg" or "pred")
        self.plugins = [p for p in list_plugins() if p.scope in ("frame", "series", "table")]
        self.chosen: dict[str, ui.checkbox] = {}
        self.forms = {}
        self.cancel_flag = threading.Event()
        ui.label("Measurements").classes("font-bold")
        for p in self.plugins:
            with ui.row().classes("items-center w-full no-wrap"):
                self.chosen[p.name] = ui.checkbox(p.title, value=p.name == "basic").props("dense").tooltip(p.description)
            with ui.expansion("Parameters", icon="tune").classes("w-full text-xs").props("dense"):
                self.forms[p.name] = schema_form(p.schema())
        self.source = ui.select({"pred": "predictions (_pred.npy)", "seg": "labels (_seg.npy)"}, value="pred",
                                label="Measure").props("dense").classes("w-full")
        self.second = ui.select({"seg": "children: labels (_seg.npy)", "pred": "children: predictions (_pred.npy)"},
                                value="seg", label="Second label set (association)").props("dense").classes("w-full")
        with ui.row():
            ui.button("This image", icon="image", on_click=self.run_current).props(
                "no-caps dense data-mcp=measure-image").mark("measure-image")
            ui.button("Whole folder", icon="folder", on_click=self.run_folder).props(
                "no-caps dense data-mcp=measure-folder").mark("measure-folder")
        self.overlays = OverlayToggles(lambda: self.ws.canvas)
        ws.on_open.append(lambda: background_tasks.create(self.show_overlays()))
        self.progress = ui.linear_progress(value=0, show_value=False).classes("w-full")
        self.progress.visible = False

    def build_results(self) -> None:
        """The results: object table with column chooser and plots beside it, then the extra tables."""
        proj = self.ws.project
        self.results = ResultsView(on_pick=self.pick,
                                   class_colors=lambda: dict(zip(proj.class_names, proj.class_colors)))
        self.tables = ui.column().classes("w-full gap-1")

    def selected(self) -> tuple[list[str], dict]:
        names = [n for n, box in self.chosen.items() if box.value]
        return names, {n: self.forms[n].values() for n in names}

    async def run_current(self) -> None:
        ed = self.ws.editor
        names, params = self.selected()
        frame_plugins = [n for n in names if next(p for p in self.plugins if p.name == n).scope == "frame"]
        if ed.labels is None or not frame_plugins:
            ui.notify("Open an image and choose at least one per-image plugin.", type="warning")
            return
        try:
            second = None
            if any(p.second_labels for p in self.plugins if p.name in frame_plugins):
                second = await run.io_bound(second_labels_for, ed.item.path, ed.item.frame, self.second.value)
            result = await run.io_bound(run_labels, ed.labels, ed.image, frame_plugins,
                                        {n: params[n] for n in frame_plugins}, image_name=ed.item.path.name,
                                        frame=ed.item.frame, second=second, overlays=True)
        except Exception as exc:
            ui.notify(f"Measurement failed: {exc}", type="negative", multi_line=True)
            return
        self.measured_kind = ed.kind
        self.results.show(result.objects)
        await self.offer_tables(result.tables)
        self.overlays.keep(result.overlays)
        await self.show_overlays()

    async def run_folder(self) -> None:
        names, params = self.selected()
        if not names:
            ui.notify("Choose at least one plugin.", type="warning")
            return
        await self.ws.flush()
        self.progress.visible, self.progress.value = True, 0.0
        state = {"done": 0, "total": 1}

        def progress(done: int, total: int, _message: str = "") -> None:
            state.update(done=done, total=max(total, 1))

        timer = ui.timer(0.3, lambda: setattr(self.progress, "value", state["done"] / state["total"]))
        try:
            needs_second = any(p.second_labels for p in self.plugins if p.name in names)
            series = [p.name for p in self.plugins if p.name in names and p.scope == "series"]
            result = await run.io_bound(run_measurements, self.ws.project.folder, names, params,
                                        source=self.source.value, progress=progress,
                                        second_source=self.second.value if needs_second else None,
                                        overlays=series)  # trails; other plugins' layers come from "This image"
        except Exception as exc:
            ui.notify(f"Measurement failed: {exc}", type="negative", multi_line=True)
            return
        finally:
            timer.cancel()
            self.progress.visible = False
        if result.skipped:  # one summary, not a toast per image
            listed = "; ".join(result.skipped[:5]) + (f"; ... and {len(result.skipped) - 5} more"
                                                    if len(result.skipped) > 5 else "")
            ui.notify(f"{len(result.skipped)} skipped: {listed}", type="warning", multi_line=True,
                      timeout=0, close_button=True)
        self.measured_kind = self.source.value
        self.results.show(result.objects)
        await self.offer_tables(result.tables)
        self.overlays.keep(result.overlays)
        await self.show_overlays()

    async def show_overlays(self) -> None:
        """Draw the kept overlay layers of the open frame."""
        item = self.ws.editor.item
        if item is not None:
            await self.overlays.show(item.path.name, item.frame)

    async def offer_tables(self, tables: dict[str, pd.DataFrame]) -> None:
        """Show each extra table of the run (per class, cluster, track, child) with a CSV download, and write it
        to ``<project>/measurements/<name>.csv``."""
        folder = self.ws.project.folder / "measurements"
        try:
            await run.io_bound(write_tables, folder, tables)
        except OSError as exc:
            ui.notify(f"Could not write the tables into {folder}: {exc}", type="negative", multi_line=True)
        self.tables.clear()
        with self.tables:
            for name, table in tables.items():
                with ui.row().classes("items-center w-full"):
                    ui.button(f"{name} (CSV)", icon="download",
                              on_click=lambda n=name, t=table: ui.download.content(
                                  t.to_csv(index=False).encode(), f"measurements_{n}.csv", "text/csv")
                              ).props("no-caps dense flat").mark(f"table-{name}")
                    ui.label(f"{len(table)} rows, saved as measurements/{name}.csv").classes("text-xs text-gray-600")
                shown = table.head(MAX_TABLE_ROWS).round(4).replace({np.nan: None})
                ui.table(columns=[{"name": c, "label": c, "field": c, "sortable": True} for c in shown.columns],
                         rows=shown.to_dict("records"), pagination=10
                         ).props("dense flat").classes("w-full text-xs").mark(f"table-view-{name}")

    async def pick(self, image: str, frame: str, mask_id: int) -> None:
        """Open the object's image and frame and highlight the object."""
        if self.measured_kind != self.ws.editor.kind:  # its id means another object on this canvas
            shown = {"seg": "labels (_seg.npy, shown in the Trainer)", "pred": "predictions (_pred.npy)"}
            ui.notify(f"Mask {mask_id} of {image} {frame} is in the {shown[self.measured_kind]}, not in the "
                      f"{shown[self.ws.editor.kind]} shown here.", type="warning")
            return
        target = Item(self.ws.project.folder / image, frame)
        for i, item in enumerate(self.ws.items):
            if item.path.name == target.path.name and item.frame == target.frame:
                if i != self.ws.index:
                    await self.ws.goto(i)
                self.ws.canvas.highlight(mask_id)
                return
        ui.notify(f"{image} {frame} is not in this folder.", type="warning")


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write each table to ``folder/<name>.csv`` (atomically)."""
    if tables:
        folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        atomic_write_bytes(folder / f"{name}.csv", table.to_csv(index=False).encode())
