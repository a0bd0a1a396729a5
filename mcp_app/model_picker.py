"""A model select box filled from the backend's model list."""

from __future__ import annotations

from nicegui import ui

from mcp_core.params import ModelInfo

from . import compute
from .state import AppState


class ModelPicker:
    """``ui.select`` of the backend's models; prefers the user's own trained models."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.models: list[ModelInfo] = []
        self.select = ui.select({}, label="Model").props("dense").classes("w-full").mark("model")

    @property
    def value(self) -> str | None:
        return self.select.value

    async def refresh(self, prefer: str | None = None) -> None:
        try:
            self.models = await compute.call(self.state.backend.list_models)
        except Exception as exc:
            ui.notify(f"Could not list models: {exc}", type="warning")
            return
        self.select.options = {m.name: f"{m.name} ({m.scope})" + ("" if m.available else " – weights missing")
                               for m in self.models}
        usable = [m.name for m in self.models if m.available]
        if prefer in self.select.options:
            self.select.value = prefer
        elif self.select.value not in usable:
            own = [m.name for m in self.models if m.available and m.scope != "builtin"]
            self.select.value = (own or usable or [None])[-1 if own else 0]
        self.select.update()
