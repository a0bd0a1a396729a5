"""Home-page notice when cellpose's pretrained CellposeSAM weights are missing where the backend computes.

It offers to download them (cellpose's own download path, run by the backend: a child process on this
computer, the server for a remote backend) with a progress bar; offline, the error says where to copy the
file. Everything else works on without them (from-scratch bases, the user's own models).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui

from mcp_core.params import ModelInfo

from .state import AppState
from .transfer_view import call_with_progress


def weights_notice(state: AppState, info: ModelInfo, on_done: Callable[[], Awaitable[None]]) -> None:
    """Say that *info*'s weights are missing and offer their download; *on_done* runs once they are there."""
    where = "this computer" if state.backend.kind == "local" else "the server"
    with ui.card().classes("w-full bg-amber-50"):
        ui.label(f"The CellposeSAM weights ({info.name}) are not on {where}: {info.note or 'not found'}.").classes(
            "text-sm")
        ui.label("Everything else works without them: train from scratch (unet) and run your own models. "
                 "Fine-tuning CellposeSAM needs them (about 1.2 GB).").classes("text-xs text-gray-600")
        button = ui.button(f"Download the {info.name} weights", icon="download").props("no-caps")
        problem = ui.label("").classes("text-xs text-negative whitespace-pre-wrap")

    async def download() -> None:
        button.props("loading")
        problem.text = ""
        try:
            got = await call_with_progress(state.backend.download_weights, info.name,
                                           title=f"Downloading the {info.name} weights")
        except Exception as exc:  # offline: the message says where to copy the file
            problem.text = str(exc)
            ui.notify(f"Could not download the {info.name} weights.", type="negative")
            return
        finally:
            button.props(remove="loading")
        ui.notify(f"The {got.name} weights are ready.", type="positive")
        await on_done()

    button.on_click(download)
