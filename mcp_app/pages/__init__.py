"""Page routes: Home, Trainer and Analyzer."""

from __future__ import annotations

from ..state import AppState


def register(state: AppState) -> None:
    """Register every page for *state*."""
    from . import analyzer, home, trainer

    home.register(state)
    trainer.register(state)
    analyzer.register(state)
