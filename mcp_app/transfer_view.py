"""Progress and ETA of a backend call that moves bytes (uploads to a remote server)."""

from __future__ import annotations

import time
from collections.abc import Callable

from nicegui import ui

from . import compute
from .job_panel import format_seconds


async def call_with_progress(fn: Callable, *args, title: str = "Uploading"):
    """Run ``fn(*args, progress=...)`` off the event loop, showing bytes, speed and ETA.

    The dialog opens only once bytes are still moving half a second after the call began (a local
    backend, which copies or reads in place, finishes without one).
    """
    seen = {"done": 0, "total": 0, "start": time.time()}

    def progress(done: int, total: int) -> None:
        seen.update(done=done, total=total)

    with ui.dialog().props("persistent") as dialog, ui.card().classes("w-96"):
        ui.label(title).classes("font-bold")
        bar = ui.linear_progress(value=0, show_value=False).classes("w-full")
        text = ui.label("").classes("text-xs")

    def refresh() -> None:
        total, done = seen["total"], seen["done"]
        elapsed = max(time.time() - seen["start"], 1e-3)
        if not total or done >= total or elapsed < 0.5:
            return
        dialog.open()
        rate = done / elapsed
        bar.value = done / total
        text.text = (f"{done / 1e6:.1f} of {total / 1e6:.1f} MB · {rate / 1e6:.1f} MB/s · "
                     f"ETA {format_seconds((total - done) / rate if rate else None)}")

    timer = ui.timer(0.25, refresh)
    try:
        return await compute.call(fn, *args, progress=progress)
    finally:
        timer.cancel()
        dialog.close()
        dialog.delete()
