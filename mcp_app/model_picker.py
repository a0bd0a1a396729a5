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
        with ui.column().classes("w-full gap-0 min-w-0"):
            self.select = ui.select({}, label="Model", on_change=self.show_detail).props("dense").classes(
                "w-full").mark("model")
            # the select cuts a long name short: state, epochs and AP of the chosen model in full below it
            self.detail = ui.label("").classes("text-xs text-gray-600").mark("model-detail")

    @property
    def value(self) -> str | None:
        return self.select.value

    async def refresh(self, prefer: str | None = None) -> None:
        try:
            self.models = await compute.call(self.state.backend.list_models)
        except Exception as exc:
            ui.notify(f"Could not list models: {exc}", type="warning")
            return
        self.select.options = {m.name: model_label(m) for m in self.models}
        usable = [m.name for m in self.models if m.available]
        if prefer in self.select.options:
            self.select.value = prefer
        elif self.select.value not in usable:
            own = [m.name for m in self.models if m.available and m.scope != "builtin"]
            self.select.value = (own or usable or [None])[-1 if own else 0]
        self.select.update()
        self.show_detail()

    def show_detail(self) -> None:
        chosen = next((m for m in self.models if m.name == self.select.value), None)
        self.detail.text = " · ".join(model_facts(chosen)) if chosen else ""


def model_label(m: ModelInfo) -> str:
    """How the picker names a model: scope, and for a trained one its state, epochs and test AP@0.5.

    ``"nuclei (user) · cancelled · 3/100 epochs · AP@0.5 0.412"``: a cancelled or 1-epoch model reads
    differently from a finished one.
    """
    return " · ".join([f"{m.name} ({m.scope})", *model_facts(m)])


def model_facts(m: ModelInfo) -> list[str]:
    """What sets a model apart beside its name: state, epochs done of those asked, test AP@0.5."""
    parts = []
    if not m.available:
        parts.append("being trained" if m.state == "training" else "weights missing")
    elif m.state:
        parts.append({"done": "finished"}.get(m.state, m.state))
    if m.epochs_done:
        parts.append(f"{m.epochs_done}/{m.epochs} epochs" if m.epochs else f"{m.epochs_done} epochs")
    if isinstance(m.metrics.get("ap50"), (int, float)):
        parts.append(f"AP@0.5 {m.metrics['ap50']:.3f}")
    return parts
