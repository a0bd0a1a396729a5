"""Image files dropped onto a Trainer or Analyzer page are copied into the open project.

The browser posts each dropped file to ``/mcp/drop/<canvas key>?name=...``; the server writes it
to a scratch folder, checks that a reader opens it and reads its first frame, and only then copies
it into the project folder atomically. Anything else (a file no reader knows, a damaged image, a
name already taken) is refused with a sentence saying why; the page shows one summary.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse
from nicegui import app, run, ui

from mcp_core.atomic import atomic_write
from mcp_core.errors import MCPError
from mcp_core.filenames import is_derived
from mcp_core.io import open_image
from mcp_core.io.registry import reader_for

from .canvas import source_of

EVENT = "mcp_dropped"


def check_name(name: str) -> str | None:
    """Why a dropped file called *name* cannot be added (``None`` when its name is fine)."""
    if not name or name != Path(name).name or name.startswith("."):
        return f"{name!r} is not a plain file name."
    if reader_for(Path(name)) is None:
        return f"{name} is not an image this app can read (see `multicellpose formats`)."
    if is_derived(Path(name)):
        return f"{name} is a label or prediction file, not an image."
    return None


def add_image(folder: Path, name: str, staged: Path) -> None:
    """Copy the image *staged* into *folder* as *name*, atomically, after checking it opens.

    Raises
    ------
    ValueError
        When the name is taken or the file cannot be read as an image.
    """
    target = folder / name
    if target.exists():
        raise ValueError(f"{name} is in the project already; rename the file to add it too.")
    try:
        with open_image(staged) as src:
            src.read(src.frames[0])
    except Exception as exc:
        raise ValueError(f"{name} cannot be read as an image: {exc}") from None
    with open(staged, "rb") as src_file, atomic_write(target) as out:
        shutil.copyfileobj(src_file, out, 1 << 20)


@app.post("/mcp/drop/{key}")
async def _drop(key: str, name: str, request: Request) -> JSONResponse:
    editor = source_of(key)
    if editor is None:
        return JSONResponse({"ok": False, "message": "This page is gone; reload it and drop the files again."}, 404)
    why = check_name(name)
    if why is not None:
        return JSONResponse({"ok": False, "message": why}, 415)
    with tempfile.TemporaryDirectory(prefix="mcp-drop-") as scratch:
        staged = Path(scratch) / name
        with open(staged, "wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
        try:
            await run.io_bound(add_image, editor.project.folder, name, staged)
        except (ValueError, MCPError) as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, 422)
    return JSONResponse({"ok": True, "message": f"{name} added to {editor.project.folder.name}."})


def install(key: str, on_added: Callable[[list[str], list[str]], Awaitable[None]]) -> None:
    """Accept files dropped anywhere on this page for the project of canvas *key*.

    *on_added(added, refused)* gets the names added and a sentence per refused file.
    """
    ui.add_body_html(f"""<script>
document.addEventListener("dragover", (e) => {{ e.preventDefault(); }});
document.addEventListener("drop", async (e) => {{
  if (!e.dataTransfer || !e.dataTransfer.files.length) return;
  e.preventDefault();
  const added = [], refused = [];
  for (const file of e.dataTransfer.files) {{
    try {{
      const url = "/mcp/drop/{key}?name=" + encodeURIComponent(file.name);
      const resp = await fetch(url, {{ method: "POST", body: file }});
      const answer = await resp.json();
      (answer.ok ? added : refused).push(answer.ok ? file.name : answer.message);
    }} catch (err) {{
      refused.push(file.name + ": " + err);
    }}
  }}
  emitEvent({json.dumps(EVENT)}, {{ added, refused }});
}});
</script>""")

    async def handle(e) -> None:
        await on_added(list(e.args["added"]), list(e.args["refused"]))

    ui.on(EVENT, handle)
