"""The annotation canvas element: a thin Python wrapper over ``assets/label_canvas.js``.

Image and label bytes go over HTTP (``/mcp/media/...``), never through element props; edits
come back as events and are answered with small patches.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict
from importlib.resources import files

import numpy as np
from fastapi import Response
from nicegui import app, ui

from .editor import Editor, Patch

_SOURCES: dict[str, Editor] = {}


def source_of(key: str) -> Editor | None:
    """The editor a page's canvas shows, by the canvas's key (``None`` once the page is gone)."""
    return _SOURCES.get(key)


class LabelCanvas(ui.element, component=str(files("mcp_assets") / "label_canvas.js")):
    """Canvas showing an :class:`Editor`'s image and labels."""

    def __init__(self, editor: Editor) -> None:
        super().__init__()
        self.editor = editor
        self.key = secrets.token_urlsafe(12)
        self._sent: tuple[np.ndarray, list[str]] | None = None  # the class table and colours the page holds
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
        """Send the editor's current item to the browser (raw channels, labels and mask boxes fetched over HTTP)."""
        v = self.editor.version
        classes, colors = self._class_table()
        self._props["classNames"] = list(self.editor.labels.class_names)
        self.update()
        pixels = {**self.editor.pixel_info(), "tileUrl": f"/mcp/media/{self.key}/tile/{{level}}/{{ty}}/{{tx}}.bin?v={v}"}
        await self.run_method("load", f"/mcp/media/{self.key}/pixels.bin?v={v}", *self._label_urls(),
                              classes, colors, keep_view, pixels, timeout=30)

    def resync(self) -> None:
        """Make the page fetch the labels and take the class table again (an edit it drew itself failed here)."""
        classes, colors = self._class_table()
        self.run_method("resync", self._label_urls()[0], classes, colors)

    def _class_table(self) -> tuple[list[int], list[str]]:
        """The editor's class table and colours, noted as what the page holds (patches send what differs)."""
        classes, colors = self.editor.class_table()
        self._sent = (np.asarray(classes, np.int64), list(colors))
        return classes, colors

    def _label_urls(self) -> tuple[str, str]:
        v = self.editor.version
        return f"/mcp/media/{self.key}/labels.bin?v={v}", f"/mcp/media/{self.key}/boxes.bin?v={v}"

    def show_display(self) -> None:
        """Redraw the image with the editor's channel choice and contrast (the browser maps the raw channels)."""
        self.run_method("setDisplay", asdict(self.editor.display))

    def apply(self, patch: Patch | None, seq: int | None = None) -> None:
        """Send *patch* to the page; *seq*: the number the page gave the edit it drew itself (the patch settles it)."""
        if patch is not None:
            if patch.classes is not None and self._props.get("classNames") != self.editor.labels.class_names:
                self._props["classNames"] = list(self.editor.labels.class_names)  # not resent after every edit
                self.update()
            self.run_method("applyPatch", self._wire(patch, seq))

    def refuse(self, seq: int) -> None:
        """Tell the page that its edit *seq* changed nothing here: it takes back what it drew."""
        self.run_method("applyPatch", {"x": 0, "y": 0, "w": 0, "h": 0, "seq": seq, "refused": True,
                                       "edits": self.editor.edits})

    def _wire(self, patch: Patch, seq: int | None) -> dict:
        """The patch as sent, with the editor's edit count (``edits``) and the page's *seq*; of its class table only
        the entries that differ from the page's (``classAt`` ids, ``classTo`` classes, ``classCount`` the table's
        length), and the colours only when they changed."""
        data = {**patch.to_dict(), "edits": self.editor.edits}
        if seq is not None:
            data["seq"] = seq
        if patch.classes is None or self._sent is None:
            return data
        new, (old, old_colors) = np.asarray(data.pop("classes"), np.int64), self._sent
        n = min(len(old), len(new))
        at = np.concatenate([np.flatnonzero(old[:n] != new[:n]), np.arange(n, len(new))])
        data.update(classAt=at.tolist(), classTo=new[at].tolist(), classCount=len(new))
        if patch.colors == old_colors:
            data.pop("colors", None)
        self._sent = (new, list(patch.colors or old_colors))
        return data

    def select(self, ids: list[int]) -> None:
        self.run_method("setSelection", ids)

    def highlight(self, mask_id: int) -> None:
        self.run_method("highlight", mask_id)

    def fit(self) -> None:
        self.run_method("fit")


def _gzipped(key: str, encode: Callable[[Editor], bytes]) -> Response:
    """The gzip bytes *encode* makes from the canvas's editor, with the editor's edit count (``X-Edits``); 404 when
    the canvas is gone, has no item open, or the part asked for does not exist (a tile outside the image)."""
    editor = _SOURCES.get(key)
    if editor is None or editor.labels is None:
        return Response(status_code=404)
    edits = editor.edits
    try:
        data = encode(editor)
    except IndexError:
        return Response(status_code=404)
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Encoding": "gzip", "Cache-Control": "no-store", "X-Edits": str(edits)})


@app.get("/mcp/media/{key}/pixels.bin")
def _pixels(key: str) -> Response:
    return _gzipped(key, Editor.pixel_bytes)


@app.get("/mcp/media/{key}/tile/{level}/{ty}/{tx}.bin")
def _tile(key: str, level: int, ty: int, tx: int) -> Response:
    """One tile of a level of a large image, for where the browser is zoomed in (encoded as ``pixels.bin``)."""
    return _gzipped(key, lambda editor: editor.tile_bytes(level, ty, tx))


@app.get("/mcp/media/{key}/labels.bin")
def _labels(key: str) -> Response:
    return _gzipped(key, Editor.label_bytes)


@app.get("/mcp/media/{key}/boxes.bin")
def _boxes(key: str) -> Response:
    return _gzipped(key, Editor.box_bytes)
