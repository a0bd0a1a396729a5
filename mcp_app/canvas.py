"""The annotation canvas element: a thin Python wrapper over ``assets/label_canvas.js``.

Image and label bytes go over HTTP (``/mcp/media/...``), never through element props; edits
come back as events and are answered with small patches.
"""

from __future__ import annotations

import secrets
from importlib.resources import files

from fastapi import Response
from nicegui import app, ui

from .editor import Editor, Patch

_SOURCES: dict[str, Editor] = {}


class LabelCanvas(ui.element, component=str(files("mcp_assets") / "label_canvas.js")):
    """Canvas showing an :class:`Editor`'s image and labels."""

    def __init__(self, editor: Editor) -> None:
        super().__init__()
        self.editor = editor
        self.key = secrets.token_urlsafe(12)
        _SOURCES[self.key] = editor
        self._props["colorMode"] = "class"
        self._props["overlay"] = True
        self._props["tool"] = "select"
        self._props["brush"] = 6
        self._props["currentClass"] = 1
        self.classes("w-full h-full")

    def _handle_delete(self) -> None:
        _SOURCES.pop(self.key, None)
        super()._handle_delete()

    def set_prop(self, name: str, value) -> None:
        self._props[name] = value
        self.update()

    async def show(self, keep_view: bool = False) -> None:
        """Send the editor's current item to the browser (image and labels fetched over HTTP)."""
        v = self.editor.version
        classes, colors = self.editor.class_table()
        await self.run_method("load", f"/mcp/media/{self.key}/image.jpg?v={v}", f"/mcp/media/{self.key}/labels.bin?v={v}",
                              classes, colors, keep_view, timeout=30)

    async def refresh_image(self) -> None:
        self.editor.version += 1
        await self.run_method("setImage", f"/mcp/media/{self.key}/image.jpg?v={self.editor.version}", timeout=30)

    def apply(self, patch: Patch | None) -> None:
        if patch is not None:
            self.run_method("applyPatch", patch.to_dict())

    def select(self, ids: list[int]) -> None:
        self.run_method("setSelection", ids)

    def highlight(self, mask_id: int) -> None:
        self.run_method("highlight", mask_id)

    def fit(self) -> None:
        self.run_method("fit")


@app.get("/mcp/media/{key}/image.jpg")
def _image(key: str) -> Response:
    editor = _SOURCES.get(key)
    if editor is None or editor.image is None:
        return Response(status_code=404)
    return Response(editor.render(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@app.get("/mcp/media/{key}/labels.bin")
def _labels(key: str) -> Response:
    editor = _SOURCES.get(key)
    if editor is None or editor.labels is None:
        return Response(status_code=404)
    return Response(editor.label_bytes(), media_type="application/octet-stream",
                    headers={"Content-Encoding": "gzip", "Cache-Control": "no-store"})
