"""Model card page (``/model/<name>``): what a model is, how it was trained, on which annotations, how well it did."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from nicegui import run, ui

from mcp_core.catalog import read_sidecar
from mcp_core.model_card import card_markdown

from ..compute import call
from ..state import AppState
from .layout import header


def export_command(model_path: str, out: Path) -> list[str]:
    """The command that writes, validates and test-runs the bioimage.io package (a separate process: torch)."""
    return [sys.executable, "-m", "mcp_app.cli", "export-model", model_path, str(out), "--format", "bioimageio"]


async def export_package(model_path: str, out: Path) -> tuple[bool, str]:
    """Run :func:`export_command`; ``(succeeded, its last output lines)``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = await asyncio.create_subprocess_exec(*export_command(model_path, out), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    output, _ = await proc.communicate()
    return proc.returncode == 0, "\n".join(output.decode(errors="replace").strip().splitlines()[-3:])


def loss_curves(train: list[float | None], test: list[float | None]) -> dict:
    """ECharts options of the training and test loss per epoch (``None``: not scored that epoch; the line joins
    the epochs that were)."""
    points = {name: [[epoch, value] for epoch, value in enumerate(values, start=1) if value is not None]
              for name, values in (("train loss", train), ("test loss", test))}
    series = [{"name": name, "type": "line", "showSymbol": len(data) < 30, "data": data}
              for name, data in points.items() if data]
    return {"animation": False, "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
            "grid": {"left": 50, "right": 20, "top": 30, "bottom": 40},
            "xAxis": {"type": "value", "name": "epoch", "nameLocation": "middle", "nameGap": 25, "minInterval": 1},
            "yAxis": {"type": "value", "name": "loss", "scale": True}, "series": series}


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
            meta = await run.io_bound(read_sidecar, found.path)
            losses = meta.get("losses") or {}
            if losses.get("train"):
                ui.label("Training curves").classes("text-lg font-bold")
                ui.echart(loss_curves(losses.get("train") or [], losses.get("test") or [])).classes(
                    "w-full h-64").mark("loss-curves")
            ui.markdown(await run.io_bound(card_markdown, found.path, found.name)).mark("model-card")
            out = Path(found.path).with_suffix(".bioimageio.zip")
            result = ui.label("").classes("text-xs").mark("export-result")

            async def export() -> None:
                button.props("loading")
                try:
                    ok, text = await export_package(found.path, out)
                finally:
                    button.props(remove="loading")
                result.text = (f"Wrote {out} (validated and tested)." if ok else f"Export failed: {text}")
                if ok:
                    ui.download(out)

            button = ui.button("Export for bioimage.io", icon="ios_share", on_click=export).props("no-caps").mark(
                "export-bioimageio")
