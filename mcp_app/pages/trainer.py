"""Trainer: label images (masks and classes), pre-fill with a model, train a model."""

from __future__ import annotations

from nicegui import background_tasks, ui

from mcp_core.catalog import OFFLINE_BASE
from mcp_core.file_version import FileChangedError
from mcp_core.params import SegmentParams, TrainParams, json_schema, train_defaults

from ..channel_picker import ChannelPicker, channel_names_of
from ..conflict import ConflictDialog
from ..forms import SchemaForm
from ..history_panel import HistoryPanel
from ..job_panel import JobHistoryView, JobPanel
from ..model_run import run_on_open_image
from ..model_picker import ModelPicker
from ..project import ClassRemoval
from ..transfer_view import call_with_progress
from ..state import AppState
from ..suggest_panel import SuggestPanel
from ..workspace import Workspace
from .side import SidePanel, workspace_page

#: Ctrl+T opens a new tab in a browser before the page sees it; the desktop window (--native) gets it.
TRAIN_KEYS = "Shift+T (Ctrl+T in the desktop window)"


class ClassPanel:
    """Current-class picker and class management (add, rename, recolour, remove)."""

    def __init__(self, state: AppState, ws: Workspace) -> None:
        self.state, self.ws = state, ws
        self.removed: list[ClassRemoval] = []  # removals an undo in the open image can take back ...
        self.restored: list[ClassRemoval] = []  # ... and those it took back, for redo
        ws.on_history.append(self.after_history)
        ws.on_edit.append(self.show_counts)
        ws.on_open.append(self.show_counts)
        ui.label("Classes").classes("font-bold")
        self.box = ui.column().classes("w-full gap-1")
        with ui.row().classes("items-center w-full no-wrap"):
            self.new_name = ui.input("New class").props("dense").classes("flex-grow")
            ui.button(icon="add", on_click=self.add).props("flat dense").tooltip("Add class").mark("add-class")
        ui.label("Removing a class keeps its masks; they become unassigned in every label file.").classes(
            "text-xs text-gray-500")
        self.conflict = ConflictDialog(self.reload_theirs, self.keep_mine, prefix="classes-")
        self.refresh()

    def changed_elsewhere(self, exc: FileChangedError) -> None:
        """Another app changed the class list on disk: nothing was changed; ask which list to keep."""
        self.conflict.ask(f"{exc} Your change was not made. Reload theirs, or keep yours, then try again.")
        self.refresh()

    def reload_theirs(self) -> None:
        self.conflict.close()
        self.state.project.read_classes()
        self._sync()
        self.ws.set_current_class(min(self.ws.current_class, len(self.state.project.class_names) - 1))
        self.refresh()

    def keep_mine(self) -> None:
        self.conflict.close()
        self.state.project.save(force=True)

    def refresh(self) -> None:
        proj = self.state.project
        self.counts: dict[int, ui.label] = {}
        self.box.clear()
        with self.box:
            for cid, (name, color) in enumerate(zip(proj.class_names, proj.class_colors)):
                with ui.row().classes("items-center w-full no-wrap gap-1"):
                    ui.radio({cid: ""}, value=self.ws.current_class if self.ws.current_class == cid else None,
                             on_change=lambda e, cid=cid: self.pick(cid)).props("dense")
                    with ui.button().props(f"flat dense data-mcp=swatch-{cid}").style(
                            f"background:{color}; width:1.25rem; height:1.25rem; min-height:0; padding:0").tooltip(
                            "Change the colour"):
                        ui.color_picker(on_pick=lambda e, cid=cid: self.recolor(cid, e.color))
                    count = ui.label("").classes("text-xs text-gray-600 w-6 text-right").props(
                        f"data-mcp=count-{cid}").tooltip("Masks of this class in this image")
                    self.counts[cid] = count
                    if cid == 0:
                        ui.label(name).classes("text-sm text-gray-500 flex-grow")
                        continue
                    field = ui.input(value=name).props("dense borderless").classes("flex-grow text-sm")
                    for event in ("keydown.enter", "blur"):  # Enter or leaving the field commits the name
                        field.on(event, lambda e, cid=cid: self.rename(cid, e.sender.value))
                    ui.button(icon="delete", on_click=lambda cid=cid: self.confirm_remove(cid)).props("flat dense size=sm")
        self.show_counts()

    def show_counts(self) -> None:
        """How many masks of each class the open image has, beside the class."""
        counts = self.ws.editor.class_counts() if self.ws.editor.labels is not None else []
        for cid, label in self.counts.items():
            label.text = str(counts[cid]) if cid < len(counts) else ""

    def pick(self, cid: int) -> None:
        self.ws.set_current_class(cid)
        self.refresh()

    def _sync(self) -> None:
        proj = self.state.project
        if self.ws.editor.labels is not None:
            self.ws.edit(lambda: self.ws.editor.set_class_list(proj.class_names, proj.class_colors))

    def add(self) -> None:
        try:
            cid = self.state.project.add_class(self.new_name.value)
        except ValueError as exc:
            ui.notify(str(exc), type="warning")
            return
        except FileChangedError as exc:
            self.changed_elsewhere(exc)
            return
        self.new_name.value = ""
        self._sync()
        self.pick(cid)

    def rename(self, cid: int, name: str) -> None:
        if name == self.state.project.class_names[cid]:
            return
        try:
            self.ws.flush_sync()
            files = self.state.project.rename_class(cid, name)
        except ValueError as exc:
            ui.notify(str(exc), type="warning")
            self.refresh()
            return
        except FileChangedError as exc:
            self.changed_elsewhere(exc)
            return
        self.ws.adopt_rewritten(files)
        self.ws.edit(lambda: self.ws.editor.rename_class(cid, self.state.project.class_names[cid]))
        ui.notify(f"Renamed; {len(files)} label file(s) updated.")

    def recolor(self, cid: int, color: str) -> None:
        if not color:
            return
        try:
            self.state.project.recolor_class(cid, color)
        except FileChangedError as exc:
            self.changed_elsewhere(exc)
            return
        self._sync()
        self.refresh()  # the swatch shows the new colour

    def confirm_remove(self, cid: int) -> None:
        name = self.state.project.class_names[cid]
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Remove class “{name}”? Its masks are kept and become unassigned in every label file.")
            with ui.row():
                ui.button("Remove", color="negative", on_click=lambda: dialog.submit(True))
                ui.button("Keep", on_click=lambda: dialog.submit(False)).props("flat")

        async def go() -> None:
            if await dialog:
                try:  # the open image's file is left to its editor: there the removal is an undoable edit
                    removal = self.state.project.remove_class(cid, skip=self.ws.editor.label_file)
                except FileChangedError as exc:
                    self.changed_elsewhere(exc)
                    return
                self.removed.append(removal)
                self.ws.edit(lambda: self.ws.editor.remove_class(cid))
                self.ws.set_current_class(min(self.ws.current_class, len(self.state.project.class_names) - 1))
                self.refresh()

        background_tasks.create(go())

    def after_history(self) -> None:
        """An undo (or redo) in the open image took back (or redid) a class removal: the project and files follow."""
        labels, proj, open_file = self.ws.editor.labels, self.state.project, self.ws.editor.label_file
        back = [r for r in self.removed if r.name in labels.class_names and r.name not in proj.class_names]
        gone = [r for r in self.restored if r.name in proj.class_names and r.name not in labels.class_names]
        try:
            for removal in back:
                proj.restore_class(removal, skip=open_file)
                self.removed.remove(removal)
                self.restored.append(removal)
            for removal in gone:
                self.removed.append(proj.remove_class(proj.class_names.index(removal.name), skip=open_file))
                self.restored.remove(removal)
        except FileChangedError as exc:
            self.changed_elsewhere(exc)
            return
        except ValueError as exc:  # a class of that name was added meanwhile
            ui.notify(str(exc), type="warning")
            return
        if back or gone:
            self.ws.set_current_class(min(self.ws.current_class, len(proj.class_names) - 1))
            self.refresh()


class TrainerSide(SidePanel):
    """The Trainer's side panel: classes, a model to pre-fill the open image, suggestions, training, jobs, history."""

    title, kind, job_kind = "Trainer", "seg", "train"

    def layout(self) -> dict:
        return {"keys": [("Train a model", TRAIN_KEYS)]}

    def keys(self) -> dict:
        return {"shift+t": self.open_train_dialog, "ctrl+t": self.open_train_dialog}

    def build(self) -> None:
        ws = self.ws
        ClassPanel(self.state, ws)
        ui.separator()
        ui.label("Model").classes("font-bold")
        self.model = ModelPicker(self.state)
        self.keep = ui.toggle({"keep": "Keep my masks", "replace": "Replace"}, value="keep").props("dense no-caps size=sm")
        self.channels = ChannelPicker(hint="Image channels fed to the model, in order; none: the model's own "
                                      "(those it was trained on).", names_of=lambda: channel_names_of(
                                          ws.editor.item.path if ws.editor.item else None))
        self.run = ui.button("Run model on this image", icon="auto_fix_high", on_click=self.run_model
                             ).props("no-caps").mark("run-model")
        SuggestPanel(ws, self.model)
        ui.separator()
        self.train = ui.button("Train… (Shift+T)", icon="model_training", on_click=self.open_train_dialog
                               ).props("no-caps").mark("train")
        self.train.tooltip(f"Train a model on this folder's labels: {TRAIN_KEYS}")
        self.jobs = ui.column().classes("w-full")
        JobHistoryView(self.history)
        ui.separator()
        HistoryPanel(ws)

    async def run_model(self) -> None:
        # with flows: the _seg.npy then carries them, as upstream cellpose's GUI writes and reads it
        params = SegmentParams(model=self.model.value, channels=self.channels.value, return_flows=True)
        await run_on_open_image(self.state.backend, self.ws, params, self.keep.value == "keep", self.run)

    def open_train_dialog(self) -> None:
        train_dialog(self.state, self.ws, self.jobs, self.model)


def register(state: AppState) -> None:
    @ui.page("/trainer")
    async def trainer() -> None:
        await workspace_page(state, TrainerSide)


def train_dialog(state: AppState, ws: Workspace, jobs_box, picker: ModelPicker) -> None:
    """The training dialog (Ctrl+T): a form generated from :class:`TrainParams`, then a job panel.

    The base-dependent fields show the chosen base model's defaults and follow a change of base.
    """
    bases = {"unet": "unet (small convolutional network trained from scratch: the offline choice)",
             "tiny": "tiny (small ViT trained from scratch)"}
    for m in picker.models:
        if m.available:
            bases[m.name] = f"{m.name} ({'pretrained' if m.scope == 'builtin' else 'fine-tune your model'})"
    default_base = next((m.name for m in picker.models if m.scope == "builtin" and m.available), OFFLINE_BASE)
    architectures = {m.name: m.architecture for m in picker.models}
    start = {"model_name": f"{state.folder.name}_model", "base_model": default_base,
             **train_defaults(default_base, architectures.get(default_base))}
    with ui.dialog() as dialog, ui.card().classes("w-[36rem]"):
        ui.label("Train a model on this folder's labels").classes("text-lg font-bold")
        form = SchemaForm(json_schema(TrainParams), values=start, choices={"base_model": bases}, grouped=True,
                          channel_names=lambda: channel_names_of(ws.editor.item.path if ws.editor.item else None))
        if default_base == OFFLINE_BASE:
            ui.label("The CellposeSAM weights are not on this machine (offline?): only the from-scratch bases "
                     "(unet, tiny) and your own models can be trained.").classes("text-xs text-gray-600")
        ui.label("Classes: " + ", ".join(state.project.class_names[1:])).classes("text-sm text-gray-600")

        def base_changed(e) -> None:  # a pretrained base fine-tunes gently, a random one learns from scratch
            for field, value in train_defaults(e.value, architectures.get(e.value)).items():
                form.set(field, value)

        form.inputs["base_model"].on_value_change(base_changed)
        with ui.row():
            ui.button("Start training", icon="play_arrow", on_click=lambda: dialog.submit(True)).mark("start-training")
            ui.button("Close", on_click=lambda: dialog.submit(False)).props("flat")

    async def go() -> None:
        if not await dialog:
            return
        await ws.flush()
        with jobs_box:  # a background task has no slot: its dialog, toast and panel belong to the page
            try:
                params = TrainParams(**{**form.values(), "class_names": list(state.project.class_names),
                                        "class_colors": list(state.project.class_colors)})
                job = await call_with_progress(state.backend.submit_training, str(state.folder), params,
                                               title="Uploading the labelled images")
            except Exception as exc:
                ui.notify(f"Training could not start: {exc}", type="negative", multi_line=True)
                return

            def ended(job_state: str, data: dict) -> None:  # a cancelled run's checkpoint is a model too
                if job_state == "done":
                    ui.notify(f"Model {params.model_name} is trained and registered.")
                background_tasks.create(picker.refresh(prefer=data.get("model")))

            JobPanel(state.backend, job.job_id, f"Training {params.model_name}", on_end=ended)

    background_tasks.create(go())
