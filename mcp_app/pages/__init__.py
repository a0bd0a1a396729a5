"""Page routes: Home, Trainer and Analyzer."""

from __future__ import annotations

from ..state import AppState


def register(state: AppState, token: str | None = None) -> None:
    """Register every page for *state* (optionally behind a token)."""
    from . import analyzer, home, trainer
    from .access import install_token

    if token:
        install_token(token)
    home.register(state)
    trainer.register(state)
    analyzer.register(state)
