"""Page routes of the app."""

from __future__ import annotations

from nicegui import run, ui

from .state import AppState


def register(state: AppState, token: str | None = None) -> None:
    """Register the pages for *state*."""

    @ui.page("/")
    async def home() -> None:
        ui.label("MultiCellPose").classes("text-2xl font-bold")
        ui.label(f"Project: {state.folder}").classes("text-gray-600")
        info = await run.io_bound(state.backend.info)
        ui.label(f"Backend: {info.kind} on {info.device}").classes("text-gray-600")
        entries = await run.io_bound(state.images)
        rows = [{"name": e.path.name, "labelled": "yes" if e.labelled else "", "predicted": "yes" if e.predicted else ""}
                for e in entries]
        ui.label(f"{len(entries)} images, {sum(e.labelled for e in entries)} labelled")
        ui.table(columns=[{"name": k, "label": k.capitalize(), "field": k, "sortable": True}
                          for k in ("name", "labelled", "predicted")], rows=rows, row_key="name").classes("w-full")
