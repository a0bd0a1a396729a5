"""The dialog shown when a file changed on disk since it was read (another app or user wrote it)."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui


class ConflictDialog:
    """A persistent dialog offering "Reload theirs" or "Keep mine"; :meth:`ask` opens it with a message.

    *prefix* goes before the test markers (``conflict-text``, ``reload-theirs``, ``keep-mine``) of
    pages that hold more than one.
    """

    def __init__(self, reload_theirs: Callable[[], None], keep_mine: Callable[[], None], prefix: str = "") -> None:
        with ui.dialog().props("persistent") as self.dialog, ui.card().classes("max-w-lg"):
            self.text = ui.label("").mark(f"{prefix}conflict-text")
            with ui.row():
                ui.button("Reload theirs", on_click=reload_theirs).props("no-caps").mark(f"{prefix}reload-theirs")
                ui.button("Keep mine (save as the newer version)", on_click=keep_mine
                          ).props("no-caps color=negative").mark(f"{prefix}keep-mine")

    def ask(self, message: str) -> None:
        self.text.text = message
        self.dialog.open()

    def close(self) -> None:
        self.dialog.close()
