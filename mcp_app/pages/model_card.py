"""Model card page (``/model/<name>``): what a model is, how it was trained, on which annotation versions, how well it did."""

from __future__ import annotations

from pathlib import Path

from nicegui import run, ui

from mcp_core.model_card import card_markdown

from ..compute import call
from ..state import AppState
from .layout import header


def register(state: AppState) -> None:
    @ui.page("/model/{name}")
    async def model_card(name: str) -> None:
        header(state, "Model card")
        with ui.column().classes("w-full max-w-4xl mx-auto p-4 gap-2"):
            try:
                models = await call(state.backend.list_models)
            except Exception as exc:
                ui.label(f"The backend is not reachable: {exc}").classes("text-negative")
                return
            found = next((m for m in models if m.name == name), None)
            if found is None:
                ui.label(f"There is no model called {name!r}.").classes("text-negative")
                return
            if found.scope == "builtin" or not Path(found.path).is_file():
                ui.label(f"{name} has no card here: it is a pretrained model, or its files are on the remote "
                         "server.").classes("text-gray-600")
                return
            ui.markdown(await run.io_bound(card_markdown, found.path, found.name)).mark("model-card")
            ui.label(f"Share it on bioimage.io: multicellpose export-model {found.path} --format bioimageio "
                     f"{found.name}.zip").classes("text-xs text-gray-600")
