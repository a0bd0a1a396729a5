"""Home: pick Trainer or Analyzer, open a folder, see the backend."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from nicegui import ui

from ..compute import call
from ..file_browser import FileBrowser, native_window, system_folder_dialog
from ..remote_panel import RemotePanel
from ..state import AppState
from ..weights_panel import weights_notice
from .layout import header


def register(state: AppState) -> None:
    @ui.page("/")
    async def home() -> None:
        header(state, "Home")
        with ui.column().classes("w-full max-w-4xl mx-auto p-4 gap-4"):
            with ui.row().classes("gap-4"):
                for title, path, icon, text in (
                    ("Trainer", "/trainer", "draw", "Label images with masks and classes, then train a model."),
                    ("Analyzer", "/analyzer", "analytics", "Run a model over folders, correct, and measure."),
                ):
                    with ui.card().classes("w-80 cursor-pointer").on("click", lambda p=path: ui.navigate.to(p)):
                        with ui.row().classes("items-center"):
                            ui.icon(icon).classes("text-3xl text-primary")
                            ui.label(title).classes("text-xl font-bold")
                        ui.label(text).classes("text-gray-600")
            with ui.card().classes("w-full"):
                ui.label("Project").classes("text-lg font-bold")
                folder = ui.input("Folder or image file", value=str(state.folder)).classes("w-full").props(
                    "data-mcp=open-path")

                def open_folder(path: str | Path) -> None:
                    try:
                        state.open_path(path)
                    except ValueError as exc:
                        ui.notify(str(exc), type="negative", multi_line=True)
                        return
                    ui.notify(f"Opened {state.focus or state.folder}")
                    if state.focus is not None:  # a single image: straight to labelling it
                        ui.navigate.to("/trainer")
                    else:
                        ui.navigate.reload()

                browser = FileBrowser(state.folder, open_folder)

                async def browse() -> None:
                    if native_window():  # the desktop window has the system's folder dialog
                        chosen = await system_folder_dialog(state.folder)
                        if chosen is not None:
                            open_folder(chosen)
                    else:
                        browser.open()

                with ui.row():
                    ui.button("Open", icon="folder_open", on_click=lambda: open_folder(folder.value))
                    ui.button("Browse…", icon="travel_explore", on_click=browse).props("data-mcp=browse").mark(
                        "browse").tooltip("Folders and images of the machine the app runs on")
                recent = state.recent.list()
                if recent:
                    ui.label("Recent folders").classes("text-sm text-gray-600 mt-2")
                    for p in recent:
                        ui.link(str(p)).on("click", lambda p=p: open_folder(str(p))).classes("text-sm cursor-pointer")
            with ui.card().classes("w-full"):
                ui.label("Backend").classes("text-lg font-bold")
                status = ui.column()

                async def show_backend() -> None:
                    status.clear()
                    try:
                        info = await call(state.backend.info)
                        models = await call(state.backend.list_models)
                    except Exception as exc:
                        with status:
                            ui.label(f"The backend is not reachable: {exc}").classes("text-negative")
                        return
                    with status:
                        ui.label(f"{info.kind} · {info.host} · {info.device}").mark("backend-kind")
                        ui.label("Versions: " + ", ".join(f"{k} {v}" for k, v in info.versions.items())
                                 ).classes("text-xs")
                        ui.label("Models: " + (", ".join(m.name + ("" if m.available else " (weights missing)")
                                                         for m in models) or "none")).classes("text-sm")
                        cpsam = next((m for m in models if m.name == "cpsam" and not m.available), None)
                        if cpsam is not None:
                            weights_notice(state, cpsam, on_done=show_backend)
                        with ui.row().classes("gap-2"):
                            for m in models:
                                if m.scope != "builtin":
                                    ui.link(f"{m.name} card", f"/model/{quote(m.name)}").classes("text-sm")

                RemotePanel(state, on_change=show_backend)
            await show_backend()
