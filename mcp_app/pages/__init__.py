"""Page routes: Home, Trainer, Analyzer and model cards."""

from __future__ import annotations

from ..state import AppState


def register(state: AppState) -> None:
    """Register every page for *state*."""
    from . import analyzer, home, model_card, trainer

    home.register(state)
    trainer.register(state)
    analyzer.register(state)
    model_card.register(state)
