"""Choosing a folder or an image on the machine the app runs on.

The listing is made by the server, so the same dialog works in a local browser, behind an SSH
port forward (the files are those of the remote machine) and in the desktop window. Nothing is
restricted: every folder the app's user may read can be opened, and one that cannot be listed
says why. In ``--native`` mode the system's folder dialog (pywebview) is offered as well.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import natsort
from nicegui import app, ui

from mcp_core.io import FOLDER_FORMATS, list_images


@dataclass
class Listing:
    """What a folder holds: sub-folders, image files, and how many other entries are not shown."""

    folder: Path
    folders: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    others: int = 0


def list_folder(folder: str | Path) -> Listing:
    """The sub-folders and image files of *folder* (hidden entries left out), in natural order.

    Raises
    ------
    ValueError
        When *folder* does not exist, is not a folder or cannot be listed, saying which.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ValueError(f"{folder} does not exist.")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
        images = list_images(folder)
    except PermissionError:
        raise ValueError(f"{folder} cannot be listed (permission denied).") from None
    except OSError as exc:
        raise ValueError(f"{folder} cannot be listed: {exc.strerror or exc}.") from None
    shown = set(images)
    folders = [Path(e.path) for e in entries if _is_dir(e) and Path(e.path) not in shown
               and not e.name.lower().endswith(FOLDER_FORMATS)]
    natural = natsort.natsorted(folders, key=lambda p: p.name, alg=natsort.ns.IGNORECASE)
    return Listing(folder.resolve(), natural, images, len(entries) - len(folders) - len(images))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def native_window() -> bool:
    """Whether the app runs in its own desktop window (``--native``), where the system dialogs exist."""
    return app.native.main_window is not None


async def system_folder_dialog(start: Path) -> Path | None:
    """The system's folder dialog of the desktop window; the folder chosen, or ``None`` when cancelled."""
    import webview

    folder_dialog = webview.FileDialog.FOLDER if hasattr(webview, "FileDialog") else webview.FOLDER_DIALOG
    chosen = await app.native.main_window.create_file_dialog(folder_dialog, directory=str(start))
    return Path(chosen[0]) if chosen else None


class FileBrowser:
    """A dialog that browses the server's folders; *on_choose* gets the folder or image file picked."""

    def __init__(self, start: Path, on_choose: Callable[[Path], Awaitable[None] | None]) -> None:
        self.on_choose = on_choose
        self.folder = Path(start)
        with ui.dialog() as self.dialog, ui.card().classes("w-[40rem] max-w-full").props("data-mcp=file-browser"):
            ui.label("Open a folder or an image (on the machine the app runs on)").classes("font-bold")
            with ui.row().classes("items-center w-full no-wrap"):
                ui.button(icon="arrow_upward", on_click=self.up).props("flat dense").tooltip("Parent folder")
                self.path = ui.input("Folder").props("dense data-mcp=browse-path").classes("flex-grow").on(
                    "keydown.enter", lambda: self.show(Path(self.path.value)))
                ui.button(icon="arrow_forward", on_click=lambda: self.show(Path(self.path.value))).props(
                    "flat dense").tooltip("Go to this folder")
            self.error = ui.label("").classes("text-negative text-sm").props("data-mcp=browse-error")
            self.entries = ui.column().classes("w-full gap-0 overflow-auto").style("max-height: 50vh")
            with ui.row().classes("w-full items-center"):
                self.summary = ui.label("").classes("text-xs text-gray-600")
                ui.space()
                ui.button("Open this folder", icon="folder_open", on_click=lambda: self.choose(self.folder)
                          ).props("no-caps data-mcp=open-this-folder")
                ui.button("Cancel", on_click=self.dialog.close).props("flat no-caps")

    def open(self) -> None:
        self.show(self.folder)
        self.dialog.open()

    def up(self) -> None:
        self.show(self.folder.parent)

    def show(self, folder: Path) -> None:
        """List *folder*; when it cannot be listed, say why and keep the previous listing."""
        try:
            listing = list_folder(folder)
        except ValueError as exc:
            self.error.text = str(exc)
            return
        self.error.text = ""
        self.folder = listing.folder
        self.path.value = str(listing.folder)
        self.entries.clear()
        with self.entries:
            for sub in listing.folders:
                with ui.item(on_click=lambda p=sub: self.show(p)).props("dense clickable").classes("w-full"):
                    with ui.item_section().props("avatar"):
                        ui.icon("folder", color="amber")
                    ui.item_section(sub.name)
            for image in listing.images:
                with ui.item(on_click=lambda p=image: self.choose(p)).props("dense clickable").classes("w-full"):
                    with ui.item_section().props("avatar"):
                        ui.icon("image", color="primary")
                    ui.item_section(image.name)
        self.summary.text = (f"{len(listing.folders)} folder(s), {len(listing.images)} image(s)"
                             + (f", {listing.others} other file(s) not shown" if listing.others else ""))

    async def choose(self, path: Path) -> None:
        self.dialog.close()
        result = self.on_choose(path)
        if result is not None:
            await result
