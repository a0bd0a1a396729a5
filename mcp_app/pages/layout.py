"""Header shared by the pages."""

from __future__ import annotations

from nicegui import ui

from ..state import AppState


def header(state: AppState, current: str) -> ui.header:
    """The page header: app name, page links and the project folder (a workspace adds its own controls)."""
    with ui.header().classes("items-center bg-slate-800 py-1 px-3 gap-4 no-wrap") as bar:
        ui.label("MultiCellPose").classes("text-lg font-bold")
        for name, path in (("Home", "/"), ("Trainer", "/trainer"), ("Analyzer", "/analyzer")):
            link = ui.link(name, path).classes("text-white no-underline")
            if name == current:
                link.classes("font-bold underline")
        ui.space()
        ui.label(str(state.folder)).classes("text-xs text-slate-300 truncate").style("min-width: 0").tooltip(
            str(state.folder))
    return bar
