"""Analyzer: run a model over images, frames or the folder, correct predictions, promote them, measure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import background_tasks, run, ui

from mcp_core.filenames import label_path
from mcp_core.labels.promote import promote_predictions
from mcp_core.params import SegmentParams, json_schema

from .. import compute
from ..channel_picker import channel_names_of
from ..forms import schema_form
from ..job_panel import JobHistoryView, JobPanel
from ..measure_panel import MeasurePanel
from ..model_picker import ModelPicker
from ..model_run import run_on_open_image
from ..review_panel import ReviewPanel
from ..transfer_view import call_with_progress
from ..state import AppState
from ..workspace import Workspace
from .side import SidePanel, workspace_page
from .trainer import ClassPanel


class AnalyzerSide(SidePanel):
    """The Analyzer's side panel: model and parameters, runs (image, frames, folder), classes, promotion, jobs,
    review and measurements (their results in the panel under the canvas)."""

    title, kind, job_kind = "Analyzer", "pred", "batch"

    def layout(self) -> dict:
        return {"bottom_panel": lambda: self.measure.build_results()}

    def build(self) -> None:
        ws = self.ws
        with ui.expansion("Model and parameters", icon="psychology", value=True).classes("w-full"):
            with ui.row().classes("items-center w-full no-wrap"):
                self.model = ModelPicker(self.state)
                ui.button(icon="add", on_click=self.add_model_dialog).props("flat dense").tooltip(
                    "Add a model file (.pth with its .json)")
            self.form = schema_form(json_schema(SegmentParams), grouped=True, channel_names=lambda:
                                    channel_names_of(ws.editor.item.path if ws.editor.item else None))
            self.channels = self.form.inputs["channels"]
            with ui.row():
                self.run_image = ui.button("This image", icon="image", on_click=self.segment_current
                                           ).props("no-caps dense").mark("run-image")
                ui.button("All frames", icon="burst_mode", on_click=lambda: self.segment_batch("frames")
                          ).props("no-caps dense")
                ui.button("Whole folder", icon="folder", on_click=lambda: self.segment_batch("folder")
                          ).props("no-caps dense").mark("run-folder")
        with ui.expansion("Classes", icon="category", value=True).classes("w-full"):
            ClassPanel(self.state, ws)
        with ui.expansion("Predictions", icon="fact_check", value=True).classes("w-full"):
            ui.label("Edits here change the _pred.npy file.").classes("text-xs text-gray-500")
            ui.button("Promote to labels", icon="upgrade", on_click=lambda: confirm_promote(ws, self.promote)
                      ).props("no-caps dense")
        self.jobs = ui.column().classes("w-full")
        JobHistoryView(self.history)
        ui.separator()
        ReviewPanel(ws)
        self.measure = MeasurePanel(ws)

    def params(self) -> SegmentParams:
        return SegmentParams(model=self.model.value, **self.form.values())

    async def segment_current(self) -> None:
        try:
            params = self.params()
        except Exception as exc:
            ui.notify(f"Segmentation failed: {exc}", type="negative", multi_line=True)
            return
        await run_on_open_image(self.state.backend, self.ws, params, False, self.run_image)

    async def segment_batch(self, scope: str) -> None:
        ws, backend = self.ws, self.state.backend
        if not self.model.value:
            ui.notify("Pick a model first.", type="warning")
            return
        await ws.flush()
        if scope == "frames":
            if ws.editor.item is None:
                return
            paths = [str(ws.editor.item.path)]
        else:
            paths = sorted({str(i.path) for i in ws.items})
        try:
            job = await compute.call(backend.submit_batch, paths, self.params())
        except Exception as exc:
            ui.notify(f"Could not start: {exc}", type="negative", multi_line=True)
            return

        async def done(_data: dict) -> None:
            with self.jobs:  # a background task has no slot: its toasts belong to the page
                try:
                    written = await compute.call(backend.fetch_predictions, job.job_id)  # remote: kept there
                except Exception as exc:
                    ui.notify(f"Could not fetch the predictions: {exc}", type="negative", multi_line=True)
                    return
                ui.notify(f"Segmentation finished: {len(written)} prediction file(s) written.", type="positive")
                ws.refresh_list()
                if ws.index >= 0:
                    await ws.goto(ws.index)  # reload the open image: its file now holds the job's prediction

        with self.jobs:
            JobPanel(backend, job.job_id, f"Segmenting {len(paths)} file(s)",
                     on_done=lambda d: background_tasks.create(done(d)))

    async def promote(self, replace: bool) -> None:
        ws = self.ws
        with self.jobs:  # run as a background task, which has no slot: its toast belongs to the page
            await ws.flush()
            result = await run.io_bound(promote_predictions, [(i.path, i.frame) for i in ws.items], replace)
            ui.notify(result.summary(), type="positive" if result.copied else "warning", multi_line=True)
            ws.refresh_list()

    def add_model_dialog(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
            ui.label("Add a model file").classes("font-bold")
            path = ui.input("Path to the .pth file (its .json sidecar beside it)").classes("w-full")
            with ui.row():
                ui.button("Add", on_click=lambda: dialog.submit(path.value))
                ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")

        async def go() -> None:
            chosen = await dialog
            if not chosen:
                return
            try:
                info = await call_with_progress(self.state.backend.add_model, chosen, title="Adding the model")
            except Exception as exc:
                ui.notify(f"Could not add the model: {exc}", type="negative", multi_line=True)
                return
            await self.model.refresh(prefer=info.name)
            ui.notify(f"Added {info.name}.")

        background_tasks.create(go())


def register(state: AppState) -> None:
    @ui.page("/analyzer")
    async def analyzer() -> None:
        await workspace_page(state, AnalyzerSide)


def confirm_promote(ws: Workspace, action: Callable[[bool], Awaitable[None]]) -> None:
    """Ask before any existing label file would be replaced; then ``action(replace)``."""
    existing = [i for i in ws.items if label_path(i.path, i.frame, "pred").exists()
                and label_path(i.path, i.frame, "seg").exists()]
    if not existing:
        background_tasks.create(action(False))
        return
    with ui.dialog() as dialog, ui.card():
        ui.label(f"{len(existing)} image(s) already have labels. Replace them with the predictions?")
        ui.label("Images without labels get the predictions either way.").classes("text-sm text-gray-600")
        with ui.row():
            ui.button("Replace them too", color="negative", on_click=lambda: dialog.submit("all"))
            ui.button("Only images without labels", on_click=lambda: dialog.submit("new"))
            ui.button("Cancel", on_click=lambda: dialog.submit(None)).props("flat")

    async def go() -> None:
        choice = await dialog
        if choice:
            await action(choice == "all")

    background_tasks.create(go())
