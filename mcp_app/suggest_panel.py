""""Label this next" in the Trainer: the unlabelled frames the chosen model doubts most, kept diverse.

The ranking (:mod:`mcp_core.suggest`) runs the model, so it runs as ``multicellpose suggest`` in a
process of its own (the app never imports torch); it needs the model file on this machine.
Clicking a suggestion opens that frame.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from nicegui import ui

from .model_picker import ModelPicker
from .workspace import Workspace

#: How many suggestions are asked for.
COUNT = 10


def suggest_command(folder: Path, model_path: str, n: int) -> list[str]:
    """The ranking command, printing JSON."""
    return [sys.executable, "-m", "mcp_app.cli", "suggest", str(folder), "--model", model_path, "-n", str(n),
            "--json", "-q"]


async def run_suggest(folder: Path, model_path: str, n: int = COUNT) -> list[dict]:
    """Ranked suggestions ``[{rank, image, frame, doubt, ...}]``.

    Raises
    ------
    RuntimeError
        When the command fails (its last error line says why).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = await asyncio.create_subprocess_exec(*suggest_command(folder, model_path, n), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"suggest exited with status {proc.returncode}")
    return json.loads(out)


class SuggestPanel:
    """A button that ranks the unlabelled frames with the picked model, and the ranked, clickable list."""

    def __init__(self, ws: Workspace, picker: ModelPicker) -> None:
        self.ws, self.picker = ws, picker
        self.button = ui.button("Label this next…", icon="lightbulb", on_click=self.run).props(
            "no-caps dense flat").mark("suggest")
        self.rows = ui.column().classes("w-full gap-0").mark("suggestions")

    async def run(self) -> None:
        info = next((m for m in self.picker.models if m.name == self.picker.value), None)
        if info is None or not Path(info.path).is_file():
            ui.notify("Pick a model whose file is on this machine (a local or downloaded model).", type="warning")
            return
        self.button.props("loading")
        try:
            found = await run_suggest(self.ws.project.folder, info.path)
        except Exception as exc:
            ui.notify(f"No suggestions: {exc}", type="warning", multi_line=True)
            return
        finally:
            self.button.props(remove="loading")
        self.show(found)

    def show(self, found: list[dict]) -> None:
        """List the suggestions; each opens its frame."""
        index = {(str(item.path.resolve()), item.frame): i for i, item in enumerate(self.ws.items)}
        self.rows.clear()
        with self.rows:
            if not found:
                ui.label("Every frame is labelled.").classes("text-xs")
            for s in found:
                i = index.get((str(Path(s["image"]).resolve()), s["frame"]))
                name = Path(s["image"]).name + (f" [{s['frame']}]" if s["frame"] else "")
                row = ui.label(f"{s['rank']}. {name} (doubt {s['doubt']:.2f})").classes(
                    "text-xs cursor-pointer text-primary").mark(f"suggestion-{s['rank']}")
                if i is not None:
                    row.on("click", lambda i=i: self.ws.goto(i))
