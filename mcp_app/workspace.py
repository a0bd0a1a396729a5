"""The labelling workspace shared by the Trainer and the Analyzer: image list, canvas, tools, autosave.

Every edit goes canvas event -> :class:`~mcp_app.editor.Editor` -> patch back to the canvas,
and schedules an atomic save; navigation and disconnects flush the save first, so nothing
drawn is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from nicegui import background_tasks, run, ui

from mcp_core.backend import default_home
from mcp_core.file_version import FileChangedError, FileVersion
from mcp_core.labels import save_labels

from . import dropzone
from .canvas import LabelCanvas
from .conflict import ConflictDialog
from .editor import Editor, Patch
from .project import Item, Project

log = logging.getLogger(__name__)
OPEN_WORKSPACES: weakref.WeakSet[Workspace] = weakref.WeakSet()
TOOLS = {"select": "Select", "lasso": "Lasso delete", "eraser": "Eraser", "split": "Split", "pan": "Pan"}
#: Every canvas gesture and page key, as the help overlay (``?``) lists them; pages add their own keys.
GESTURES = (
    ("New mask", "Right-click, trace the outline (no button held), come back to the start (or right-click again)"),
    ("Delete a mask", "Ctrl+click"),
    ("Select", "Click a mask, or drag a rectangle (Select tool); Esc clears"),
    ("Assign the current class", "Shift+click (the whole selection if the clicked mask is selected)"),
    ("Delete many", "Lasso delete tool: masks with at least half their area inside are deleted"),
    ("Erase", "Eraser tool, drag; , and . change the brush size"),
    ("Split", "Split tool: drag a line across a mask"),
    ("Zoom / pan / fit", "Wheel / middle-drag, Space+drag or the Pan tool / F"),
    ("Previous / next image or frame", "← / →"),
    ("Undo / redo", "Ctrl+Z / Ctrl+Shift+Z"),
    ("This help", "?"),
)
AUTOSAVE_DELAY_S = 0.3
#: Images up to this many pixels are saved AUTOSAVE_DELAY_S after the last edit; a larger one waits longer in
#: proportion, up to AUTOSAVE_MAX_S: its save takes seconds (8192x8192: 6-9 s on 2 busy cores) and holds up the
#: page's events in parts meanwhile, so it waits for a pause in the editing rather than run between two edits.
AUTOSAVE_PIXELS = 2048 * 2048
AUTOSAVE_MAX_S = 5.0


def autosave_delay(shape: tuple[int, int]) -> float:
    """Seconds without edits before the labels of an image of *shape* are saved."""
    return min(AUTOSAVE_MAX_S, AUTOSAVE_DELAY_S * max(1.0, shape[0] * shape[1] / AUTOSAVE_PIXELS))


class Workspace:
    """UI around one :class:`Editor`. Build it inside a page with :meth:`build`."""

    def __init__(self, project: Project, kind: str = "seg") -> None:
        self.project = project
        self.editor = Editor(project, kind)  # type: ignore[arg-type]
        self.items: list[Item] = []
        self.index = -1
        self.current_class = 1 if len(project.class_names) > 1 else 0
        self.canvas: LabelCanvas | None = None
        self._save_task: asyncio.Task | None = None
        self.on_open: list[Callable[[], None]] = []
        self.on_edit: list[Callable[[], None]] = []  # called after each edit that changed something
        self.on_history: list[Callable[[], None]] = []  # after each undo or redo step (a class may come back)
        self.status: ui.label | None = None
        self.unreadable: dict[int, str] = {}  # item index -> why it could not be opened
        OPEN_WORKSPACES.add(self)

    # ------------------------------------------------------------------- layout
    def build_list(self) -> None:
        """The image/frame list (call inside a drawer or column)."""
        self.list_box = ui.column().classes("w-full gap-0")
        self.refresh_list()

    def refresh_list(self) -> None:
        self.list_box.clear()
        with self.list_box:
            for i, item in enumerate(self.items):
                done = self.project.has_labels(item, self.editor.kind)
                row = ui.item(on_click=lambda i=i: self.goto(i)).classes("w-full py-0 min-h-0")
                row.props("dense clickable" + (" active" if i == self.index else ""))
                with row:
                    with ui.item_section().props("avatar"):
                        if i in self.unreadable:
                            ui.icon("error", color="negative").classes("text-sm").tooltip(self.unreadable[i])
                        else:
                            ui.icon("check_circle" if done else "radio_button_unchecked",
                                    color="positive" if done else "grey").classes("text-sm")
                    ui.item_section(item.name).classes("text-xs")

    def build_toolbar(self) -> None:
        """One row of tools (it fits beside both drawers from 1024 px up); the mask and channel display
        settings are in the Display menu, the image title and save status in the page header."""
        with ui.row().classes("items-center gap-0.5 w-full no-wrap").props("data-mcp=toolbar"):
            ui.button(icon="chevron_left", on_click=lambda: self.step(-1)).props("flat dense").tooltip("Previous (←)").mark("prev")
            ui.button(icon="chevron_right", on_click=lambda: self.step(1)).props("flat dense").tooltip("Next (→)").mark("next")
            self.tool = ui.toggle(TOOLS, value="select", on_change=lambda e: self.canvas.set_prop("tool", e.value)
                                  ).props("dense no-caps no-wrap size=sm")
            self.brush = ui.number("Brush", value=6, min=1, max=200, step=1,
                                   on_change=lambda e: self.canvas.set_prop("brush", int(e.value or 1))
                                   ).props("dense").classes("w-12").tooltip("Eraser brush radius (, and .)")
            ui.button(icon="undo", on_click=self.undo).props("flat dense").tooltip("Undo (Ctrl+Z)").mark("undo")
            ui.button(icon="redo", on_click=self.redo).props("flat dense").tooltip("Redo (Ctrl+Shift+Z)").mark("redo")
            ui.button(icon="fit_screen", on_click=lambda: self.canvas.fit()).props("flat dense").tooltip("Fit (F)")
            with ui.button(icon="tune").props("flat dense data-mcp=display").tooltip("Display: masks and channels"):
                with ui.menu():  # a menu inside the button opens on the button only
                    self.build_display_menu()
            ui.button(icon="help_outline", on_click=lambda: self.help.open()).props("flat dense").tooltip(
                "Shortcuts and gestures (?)").props("data-mcp=help")
        self.conflict = ConflictDialog(self.reload_theirs, self.keep_mine)

    def build_display_menu(self) -> None:
        """How masks are drawn (colouring, fill or outline, opacity) and the channels' colours and contrast."""
        with ui.column().classes("p-3 gap-1 w-[30rem] max-w-[95vw]"):
            ui.label("Masks").classes("text-xs font-bold")
            with ui.row().classes("items-center gap-2"):
                ui.toggle({"class": "By class", "instance": "By instance"}, value="class",
                          on_change=lambda e: self.canvas.set_prop("colorMode", e.value)).props("dense no-caps size=sm")
                ui.toggle({"fill": "Fill", "outline": "Outline"}, value="fill",
                          on_change=lambda e: self.canvas.set_prop("outline", e.value == "outline")
                          ).props("dense no-caps size=sm").props("data-mcp=mask-style")
                ui.switch("Show", value=True, on_change=lambda e: self.canvas.set_prop("overlay", e.value)
                          ).props("dense").tooltip("Show the masks")
            with ui.row().classes("items-center w-full no-wrap"):
                ui.label("Opacity").classes("text-xs")
                ui.slider(min=0, max=100, value=100, on_change=lambda e: self.canvas.set_prop("opacity", e.value / 100)
                          ).props("dense label").classes("flex-grow min-w-0 px-2").props("data-mcp=opacity")
            ui.separator()
            ui.label("Channels").classes("text-xs font-bold")
            self.channel_box = ui.column().classes("w-full gap-1")

    def build_help(self, keys: Sequence[tuple[str, str]] = ()) -> None:
        """The shortcuts overlay (``?`` or the toolbar's help button): every gesture, and the page's *keys*."""
        with ui.dialog() as self.help, ui.card().classes("max-w-3xl").props("data-mcp=help-overlay"):
            ui.label("Shortcuts and gestures").classes("text-lg font-bold")
            rows = [{"action": a, "how": h} for a, h in (*GESTURES, *keys)]
            ui.table(columns=[{"name": "action", "label": "Action", "field": "action", "align": "left"},
                              {"name": "how", "label": "How", "field": "how", "align": "left"}],
                     rows=rows).props("dense flat wrap-cells hide-pagination").classes("w-full")
            ui.button("Close", on_click=self.help.close).props("flat")

    def build_canvas_box(self) -> None:
        """The canvas, and over it the message an empty folder shows."""
        with ui.element("div").classes("w-full h-full relative"):
            self.build_canvas()
            self.empty = ui.label("").classes("absolute inset-0 m-auto h-fit max-w-lg p-4 rounded bg-white "
                                              "text-center").props("data-mcp=empty-folder")
            self.empty.visible = False

    def build_canvas(self) -> LabelCanvas:
        self.canvas = LabelCanvas(self.editor).mark("canvas")
        self.canvas.set_prop("currentClass", self.current_class)
        for event, handler in {
            "polygon": lambda a: self.editor.add_polygon(a["points"], int(a.get("class_id", self.current_class))),
            "delete": lambda a: self.editor.delete(a["ids"]),
            "assign": lambda a: self.editor.assign(a["ids"], int(a.get("class_id", self.current_class))),
            "lasso": lambda a: self.editor.lasso(a["points"]),
            "erase": lambda a: self.editor.erase(a["points"], float(a["radius"])),
            "split": lambda a: self.editor.split(int(a["id"]), a["points"]),
        }.items():
            self.canvas.on(event, lambda e, h=handler: self.edit(lambda: h(e.args), e.args.get("seq")))
        self.canvas.on("brush", lambda e: self.brush.set_value(int(e.args["size"])))
        return self.canvas

    def bind_keys(self, extra: dict[str, Callable] | None = None) -> None:
        """Page-wide keys: ←/→ navigate, Ctrl+Z / Ctrl+Shift+Z undo/redo, ``?`` help, plus *extra*
        (``{"ctrl+t": fn, "shift+t": fn}``: modifiers in the order ctrl, alt, shift, then the key in lower case)."""
        extra = extra or {}

        async def on_key(e) -> None:
            if not e.action.keydown or e.action.repeat and not e.key.arrow_left and not e.key.arrow_right:
                return
            ctrl = e.modifiers.ctrl or e.modifiers.meta
            name = str(e.key.name).lower()
            combo = "ctrl+" * ctrl + "alt+" * e.modifiers.alt + "shift+" * e.modifiers.shift + name
            if ctrl and name == "z":
                await (self.redo() if e.modifiers.shift else self.undo())
            elif name == "?":
                self.help.open()
            elif combo in extra:
                result = extra[combo]()
                if asyncio.iscoroutine(result):
                    await result
            elif not ctrl and e.key.arrow_left:
                await self.step(-1)
            elif not ctrl and e.key.arrow_right:
                await self.step(1)

        ui.keyboard(on_key=on_key, ignore=["input", "select", "button", "textarea"])

    def build_layout(self, header: ui.header, side_panel, side_width: int = 300,
                     keys: Sequence[tuple[str, str]] = (), bottom_panel: Callable[[], None] | None = None) -> None:
        """The page body: image list on the left, *side_panel()* on the right, toolbar and canvas between.

        The page's *header* gets a toggle for each drawer (they come back at any window width), the open
        image's title and the save status; *keys* are the page's own shortcuts for the help overlay;
        *bottom_panel()* fills a panel under the canvas, its height dragged at the bar between them.
        """
        with ui.left_drawer(value=True).classes("p-2 bg-slate-50").props("width=190") as left:
            ui.label("Images").classes("font-bold")
            self.build_list()
        with ui.right_drawer(value=True).classes("p-3 bg-slate-50").props(f"width={side_width}") as right:
            side_panel()
        with header:
            ui.button(icon="menu", on_click=left.toggle).props("flat dense color=white").tooltip(
                "Show or hide the image list").props("data-mcp=toggle-left").move(target_index=0)
            links = [e for e in header.default_slot.children if isinstance(e, ui.link)]
            self.title = ui.label("").classes("text-sm text-white font-medium truncate").style(
                "max-width: 16rem").mark("title").move(target_index=header.default_slot.children.index(links[-1]) + 1)
            # a fixed width, cut with an ellipsis: a longer status never moves anything
            self.status = ui.label("").classes("text-xs text-slate-300 truncate").style(
                "width: 12rem; flex: none").mark("save-status").move(
                target_index=header.default_slot.children.index(self.title) + 1)
            ui.button(icon="view_sidebar", on_click=right.toggle).props("flat dense color=white").tooltip(
                "Show or hide the side panel").props("data-mcp=toggle-right")
        with ui.column().classes("w-full gap-1").style("height: calc(100vh - 80px)"):
            self.build_toolbar()
            if bottom_panel is None:
                with ui.element("div").classes("w-full flex-grow").style("min-height: 240px"):
                    self.build_canvas_box()
            else:
                with ui.splitter(horizontal=True, value=62, limits=(15, 95)).classes("w-full flex-grow").style(
                        "min-height: 240px").props("data-mcp=splitter") as split:
                    with split.before:
                        self.build_canvas_box()
                    with split.after, ui.column().classes("w-full p-2 gap-1").props("data-mcp=bottom-panel"):
                        bottom_panel()
        self.build_help(keys)
        dropzone.install(self.canvas.key, self.files_dropped)
        ui.context.client.on_disconnect(self.flush_sync)

    async def files_dropped(self, added: list[str], refused: list[str]) -> None:
        """Image files dropped onto the page were copied into the project (*added*) or not (*refused*, why)."""
        if refused:  # one summary for the whole drop
            ui.notify(f"{len(refused)} file(s) not added: " + " ".join(refused), type="warning", multi_line=True,
                      timeout=0, close_button=True)
        if not added:
            return
        ui.notify(f"Added {', '.join(added)} to {self.project.folder.name}.", type="positive")
        await self.load_items()
        if self.editor.item is not None:  # the open item may have moved in the list
            self.index = self.items.index(self.editor.item)
            self.refresh_list()
        self.empty.visible = False
        if self.index < 0:
            await self.step(1)

    async def start(self, first: Path | None = None) -> None:
        """Load the folder and open *first* (an image file of it) or its first item that can be opened;
        say how to add images when there are none."""
        await self.load_items()
        chosen = [i for i, item in enumerate(self.items) if first is not None and item.path == first]
        if chosen:
            await self.goto(chosen[0])
        if self.items:
            if self.index < 0:
                await self.step(1)
            return
        self.empty.text = (f"This folder has no images yet: {self.project.folder}. Copy image files (TIFF, PNG, JPEG, "
                           "ND2, LIF, ...) into it, or drop them onto this page, or open another folder or image "
                           "on the Home page (Browse...).")
        self.empty.visible = True

    # --------------------------------------------------------------- navigation
    async def load_items(self) -> None:
        self.items = await run.io_bound(self.project.items)
        self.unreadable.clear()
        self.refresh_list()

    async def goto(self, index: int) -> None:
        if not self.items:
            ui.notify("This folder has no images.", type="warning")
            return
        index = max(0, min(index, len(self.items) - 1))
        if not await self.flush():
            return  # unsaved edits stay here until saved or dropped
        item = self.items[index]
        try:
            await run.io_bound(self.editor.open, item)
        except Exception as exc:  # the file stays untouched; the editor keeps the previous item
            self.unreadable[index] = str(exc)
            self.refresh_list()
            ui.notify(f"Cannot open {item.name}: {exc}", type="negative", multi_line=True)
            return
        self.unreadable.pop(index, None)
        self.index = index
        self.title.text = f"{item.name} ({index + 1}/{len(self.items)})"
        await self.canvas.show(keep_view=True)
        self.editor.prefetch([self.items[i] for i in (index + 1, index - 1) if 0 <= i < len(self.items)])
        self.build_channel_controls()
        self.refresh_list()
        self.set_status("Saved" if self.project.has_labels(item, self.editor.kind) else "No labels yet")
        for callback in self.on_open:
            callback()

    async def step(self, delta: int) -> None:
        """Open the next (``delta=1``) or previous (``-1``) item, passing over items that cannot be opened."""
        index = self.index + delta
        while 0 <= index < len(self.items):
            await self.goto(index)
            if self.index == index or self.editor.dirty:
                return  # opened, or unsaved edits hold this item
            index += delta

    # -------------------------------------------------------------------- edits
    def edit(self, action: Callable[[], Patch | None], seq: int | None = None) -> Patch | None:
        """Run one edit, send its patch, schedule the autosave; errors become notifications.

        *seq* numbers an edit the page drew already: an edit that changes nothing takes it back there, and one that
        fails makes the page fetch the labels again.
        """
        if self.editor.labels is None:
            if seq is not None:
                self.canvas.refuse(seq)
            return None
        started = time.perf_counter()
        try:
            patch = action()
        except Exception as exc:
            ui.notify(str(exc), type="negative")
            if seq is not None:
                self.canvas.resync()
            return None
        if patch is None and seq is not None:
            self.canvas.refuse(seq)
        if patch is not None:
            patch.ms = round((time.perf_counter() - started) * 1e3, 2)
            self.canvas.apply(patch, seq)
            self.schedule_save()
            for callback in self.on_edit:
                callback()
        return patch

    async def undo(self) -> None:
        await self._history_step(self.editor.undo, "Nothing to undo.")

    async def redo(self) -> None:
        await self._history_step(self.editor.redo, "Nothing to redo.")

    async def _history_step(self, step: Callable[[], Patch | None], nothing: str) -> None:
        if self.editor.labels is None:
            return
        if self.edit(step) is None:
            ui.notify(nothing)
            return
        for callback in self.on_history:
            callback()

    def set_current_class(self, class_id: int) -> None:
        self.current_class = class_id
        if self.canvas is not None:
            self.canvas.set_prop("currentClass", class_id)

    # --------------------------------------------------------------------- save
    def set_status(self, text: str) -> None:
        if self.status is not None and self.status.text != text:  # an edit after an edit changes nothing here
            self.status.text = text
            self.status.props["title"] = text  # the whole text on hover when the ellipsis cuts it

    def schedule_save(self) -> None:
        self.set_status("Unsaved changes…")
        if self._save_task is not None and not self._save_task.done():
            self._save_task.cancel()
        self._save_task = background_tasks.create(self._save_later(), name="autosave")

    async def _save_later(self) -> None:
        await asyncio.sleep(autosave_delay(self.editor.labels.shape))
        await self.flush()

    async def flush(self, force: bool = False) -> bool:
        """Save now if anything changed (called before navigating); whether nothing is left unsaved.

        When another writer changed the file since it was opened, nothing is written and the page
        asks which version to keep (:meth:`reload_theirs`, :meth:`keep_mine`).
        """
        if not self.editor.dirty:
            return True
        self.set_status("Saving…")
        try:
            path = await run.io_bound(self.editor.save, force)
        except FileChangedError as exc:
            self.set_status("Not saved: the file changed on disk")
            self.conflict.ask(f"{exc} Reload theirs (your unsaved edits are dropped) or keep yours?")
            return False
        except Exception as exc:
            self.set_status("Not saved!")
            ui.notify(f"Could not save: {exc}", type="negative", multi_line=True, timeout=0, close_button=True)
            return False
        self.set_status(f"Saved {path.name}" if path else "Saved")
        if path is not None and self.index >= 0:
            self.refresh_list()
        return True

    def adopt_rewritten(self, files: list[Path]) -> None:
        """This app rewrote *files* (a class rename or removal): the open one's new version is not a conflict."""
        path = self.editor.label_file
        if path in files and not self.editor.dirty:
            self.editor.file_version = FileVersion.of(path)

    async def keep_mine(self) -> None:
        """Overwrite the file changed by another writer with this page's labels."""
        self.conflict.close()
        await self.flush(force=True)

    async def reload_theirs(self) -> None:
        """Drop this page's unsaved edits and show the file as the other writer left it."""
        self.conflict.close()
        try:
            await run.io_bound(self.editor.reload)
        except Exception as exc:
            ui.notify(f"Cannot reload {self.editor.item.name}: {exc}", type="negative", multi_line=True)
            return
        await self.canvas.show(keep_view=True)
        self.set_status("Reloaded from disk")
        for callback in self.on_open:
            callback()

    @staticmethod
    def flush_all() -> None:
        """Save every open workspace (at server shutdown)."""
        for ws in list(OPEN_WORKSPACES):
            ws.flush_sync()

    def flush_sync(self) -> None:
        """Blocking save for shutdown and disconnect handlers.

        When another writer changed the file, it is left as it is and this page's labels go to
        ``<home>/unsaved/`` instead (the log says where), so closing a tab mid-conflict loses nothing.
        """
        try:
            self.editor.save()
        except FileChangedError as exc:
            keep = default_home() / "unsaved" / f"{time.strftime('%Y%m%d-%H%M%S')}_{exc.path.name}"
            try:
                keep.parent.mkdir(parents=True, exist_ok=True)
                save_labels(keep, self.editor.labels, image_path=self.editor.item.path)
            except Exception:
                log.exception("%s; the page's edits could not be kept either", exc)
                return
            log.warning("%s This page's edits were kept in %s.", exc, keep)
        except Exception:
            log.exception("autosave on close failed")

    # ----------------------------------------------------------------- channels
    def build_channel_controls(self) -> None:
        """Red/green/blue channel choice and, per channel, contrast limits as numbers and as a range slider.

        The browser holds the raw channels: a slider move redraws there at once (no server round trip),
        and the limits are kept here for the next image.
        """
        img = self.editor.image
        if img is None:
            return
        d = self.editor.display
        n = img.shape[2]
        options = {None: "off", **{c: f"channel {c}" for c in range(n)}}
        self.channel_box.clear()
        with self.channel_box:
            with ui.row().classes("w-full no-wrap gap-1"):
                for k, colour in enumerate(("Red", "Green", "Blue")):
                    ui.select(options, value=d.rgb[k] if d.rgb[k] is not None and d.rgb[k] < n else None, label=colour,
                              on_change=lambda e, k=k: self._set_rgb(k, e.value)).props("dense").classes("flex-grow")
            minima, peak = self.editor.extremes  # found with the read, off the event loop
            top = 255.0 if img.dtype.kind != "f" and img.dtype.itemsize == 1 else peak
            self.limits = []
            for c in range(n):
                lowest, highest = min(minima[c], 0.0), max(top, d.high[c])
                with ui.row().classes("items-center w-full no-wrap gap-1"):
                    ui.label(f"ch {c}").classes("text-xs whitespace-nowrap")
                    low = ui.number(value=round(d.low[c], 4), on_change=lambda e, c=c: self._typed_limit(c)
                                    ).props("dense").classes("w-20").props(f"data-mcp=low-{c}")
                    slider = ui.range(min=lowest, max=highest, step=max((highest - lowest) / 1000, 1e-3),
                                      value={"min": d.low[c], "max": d.high[c]},
                                      on_change=lambda e, c=c: self._slid_limit(c, e.value)
                                      ).props(f"dense data-mcp=contrast-{c}").classes("flex-grow min-w-0 px-2")
                    slider.on("update:modelValue", js_handler=f"(v) => getElement({self.canvas.id})"
                                                              f".setLimits({c}, v.min, v.max)")
                    high = ui.number(value=round(d.high[c], 4), on_change=lambda e, c=c: self._typed_limit(c)
                                     ).props("dense").classes("w-20").props(f"data-mcp=high-{c}")
                self.limits.append((low, slider, high))
            ui.button("Auto contrast", on_click=self._auto).props("flat dense no-caps").tooltip(
                "Each channel from its 1st to its 99.8th percentile").props("data-mcp=auto-contrast")

    def _set_limits(self, c: int, lo: float, hi: float) -> None:
        self.editor.display.low[c], self.editor.display.high[c] = lo, max(hi, lo + 1e-6)

    def _slid_limit(self, c: int, value: dict) -> None:
        """The slider moved (the browser has redrawn already): keep the limits and show them as numbers."""
        low, _, high = self.limits[c]
        self._set_limits(c, float(value["min"]), float(value["max"]))
        low.set_value(round(self.editor.display.low[c], 4))
        high.set_value(round(self.editor.display.high[c], 4))

    def _typed_limit(self, c: int) -> None:
        """A limit was typed: move the slider and redraw."""
        low, slider, high = self.limits[c]
        if low.value is None or high.value is None:
            return
        if (float(low.value), float(high.value)) == (self.editor.display.low[c], self.editor.display.high[c]):
            return  # the numbers only followed the slider
        self._set_limits(c, float(low.value), float(high.value))
        slider.set_value({"min": self.editor.display.low[c], "max": self.editor.display.high[c]})
        self.canvas.show_display()

    def _set_rgb(self, k: int, channel: int | None) -> None:
        self.editor.display.rgb[k] = channel
        self.canvas.show_display()

    def _auto(self) -> None:
        self.editor.auto_contrast()
        self.build_channel_controls()
        self.canvas.show_display()
