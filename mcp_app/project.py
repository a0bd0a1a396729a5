"""A project folder: its images and frames, its class list, and the recent-folders list.

The class list lives in ``<folder>/multicellpose.json``. Label files store class *names*, so
on opening a file its classes are mapped by name onto the project's list (names the project
lacks are added, never dropped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcp_core.atomic import atomic_write_text
from mcp_core.classmap import remap_classes
from mcp_core.file_version import FileChangedError, FileVersion, write_unless_changed
from mcp_core.filenames import label_path
from mcp_core.io import list_images, open_image
from mcp_core.labels import LabelSet, default_color, load_labels, save_labels
from mcp_core.labels.npyfile import read_label_dict

log = logging.getLogger(__name__)
PROJECT_FILE = "multicellpose.json"
UNASSIGNED = "unassigned"


@dataclass
class Item:
    """One frame of one image: what ←/→ move through."""

    path: Path
    frame: str = ""

    @property
    def name(self) -> str:
        return self.path.name + (f" [{self.frame}]" if self.frame else "")


@dataclass
class ClassRemoval:
    """What :meth:`Project.remove_class` did, for :meth:`Project.restore_class`."""

    class_id: int
    name: str
    color: str
    #: Label file -> ids of its masks that had the class.
    masks: dict[Path, list[int]] = field(default_factory=dict)
    #: The label files rewritten.
    files: list[Path] = field(default_factory=list)


@dataclass
class Project:
    """The open project folder."""

    folder: Path
    class_names: list[str] = field(default_factory=lambda: [UNASSIGNED])
    class_colors: list[str] = field(default_factory=lambda: [default_color(0)])
    #: Version of ``multicellpose.json`` as last read or written here (None: there was none).
    config_version: FileVersion | None = field(default=None, compare=False, repr=False)

    @classmethod
    def open(cls, folder: str | Path) -> Project:
        """Open a folder, reading its class list (or the classes its first label file uses)."""
        folder = Path(folder).resolve()
        proj = cls(folder)
        proj.read_classes()
        if len(proj.class_names) == 1:
            for seg in sorted(folder.glob("*_seg.npy"))[:20]:
                try:
                    ls = load_labels(seg)
                except Exception:
                    continue
                proj.merge_class_names(ls.class_names, ls.class_colors)
        if len(proj.class_names) == 1:
            proj.class_names.append("cell")
            proj.class_colors.append(default_color(1))
        return proj

    def read_classes(self) -> None:
        """Read the class list from ``multicellpose.json`` (kept as it is when that is missing or damaged)."""
        cfg = self.folder / PROJECT_FILE
        try:
            self.config_version = FileVersion.of(cfg)
        except OSError:
            return  # unreadable: the label files' classes are used, and saving will say why it fails
        if self.config_version is None:
            return
        try:
            data = json.loads(cfg.read_text())
            names = [UNASSIGNED] + [c["name"] for c in data.get("classes", [])]
            colors = [default_color(0)] + [c.get("color") or default_color(i + 1)
                                           for i, c in enumerate(data.get("classes", []))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # a damaged project file falls back to the label files' classes
        self.class_names, self.class_colors = names, colors

    def check_unchanged(self) -> None:
        """Raise :class:`FileChangedError` if another app changed ``multicellpose.json`` since it was read here."""
        cfg = self.folder / PROJECT_FILE
        if not FileVersion.same(FileVersion.of(cfg), self.config_version):
            raise FileChangedError(cfg)

    def save(self, force: bool = False) -> None:
        """Write the class list to ``multicellpose.json`` (atomically).

        Raises
        ------
        FileChangedError
            When another app changed the file since this one read or wrote it (unless *force*).
        """
        data = {"classes": [{"name": n, "color": c} for n, c in zip(self.class_names[1:], self.class_colors[1:])]}
        cfg = self.folder / PROJECT_FILE
        self.config_version = write_unless_changed(
            cfg, self.config_version, lambda: atomic_write_text(cfg, json.dumps(data, indent=2)), force)

    # ------------------------------------------------------------------ images
    def items(self) -> list[Item]:
        """Every frame of every image, in natural order."""
        out = []
        for path in list_images(self.folder):
            try:
                with open_image(path) as src:
                    frames = list(src.frames)
            except Exception:
                frames = [""]  # listed anyway, so the user sees the error when opening it
            out.extend(Item(path, f) for f in frames)
        return out

    def has_labels(self, item: Item, kind: str = "seg") -> bool:
        return label_path(item.path, item.frame, kind).exists()  # type: ignore[arg-type]

    # ----------------------------------------------------------------- classes
    def merge_class_names(self, names: list[str], colors: list[str] | None = None) -> None:
        """Add class names the project lacks (index 0, "unassigned", is never added)."""
        colors = colors or []
        for i, name in enumerate(names[1:], start=1):
            if name not in self.class_names:
                self.class_names.append(name)
                self.class_colors.append(colors[i] if i < len(colors) else default_color(len(self.class_names) - 1))

    def adopt(self, labels: LabelSet) -> LabelSet:
        """Map a label set's classes onto the project's class list (by name)."""
        self.merge_class_names(labels.class_names, labels.class_colors)
        classes = remap_classes(labels.classes, labels.class_names, self.class_names).astype(labels.classes.dtype)
        out = LabelSet(labels.masks, classes, list(self.class_names),
                       list(self.class_colors), labels.flows, labels.diameter, labels.flow_threshold,
                       labels.cellprob_threshold, confidence=labels.confidence)
        return out

    def add_class(self, name: str, color: str | None = None) -> int:
        name = name.strip()
        if not name:
            raise ValueError("A class needs a name.")
        if name in self.class_names:
            raise ValueError(f"There is already a class named {name!r}.")
        self.check_unchanged()
        self.class_names.append(name)
        self.class_colors.append(color or default_color(len(self.class_names) - 1))
        self.save()
        return len(self.class_names) - 1

    def rename_class(self, class_id: int, name: str) -> list[Path]:
        """Rename a class here and in every label file of the folder; returns the files rewritten."""
        name = name.strip()
        if not 0 < class_id < len(self.class_names):
            raise ValueError(f"There is no class {class_id}.")
        if not name or (name in self.class_names and self.class_names.index(name) != class_id):
            raise ValueError(f"{name!r} is empty or already used by another class.")
        self.check_unchanged()
        old = self.class_names[class_id]
        self.class_names[class_id] = name
        self.save()
        return self._rewrite_files(lambda ls, _path: _rename(ls, old, name))

    def recolor_class(self, class_id: int, color: str) -> None:
        self.check_unchanged()
        self.class_colors[class_id] = color
        self.save()

    def remove_class(self, class_id: int, skip: Path | None = None) -> ClassRemoval:
        """Remove a class: its masks stay but become "unassigned", in every label file of the folder.

        *skip* is a file the caller changes itself (the open image's, where it is an undoable edit).
        Returns what was done, for :meth:`restore_class` (undo).
        """
        if not 0 < class_id < len(self.class_names):
            raise ValueError(f"There is no class {class_id}.")
        self.check_unchanged()
        removal = ClassRemoval(class_id, self.class_names.pop(class_id), self.class_colors.pop(class_id))
        self.save()

        def drop(ls: LabelSet, path: Path) -> bool:
            if path == skip or removal.name not in ls.class_names:
                return False
            in_file = ls.class_names.index(removal.name)
            removal.masks[path] = np.flatnonzero(ls.classes == in_file).tolist()
            ls.remove_class(in_file)
            return True

        removal.files = self._rewrite_files(drop)
        return removal

    def restore_class(self, removal: ClassRemoval, skip: Path | None = None) -> list[Path]:
        """Undo :meth:`remove_class`: the class back in its place, and its masks back in it in every label file.

        *skip* is a file whose masks the caller restores itself (the open image's). A mask that was
        deleted or given another class since stays as it is. Returns the files rewritten.
        """
        if removal.name in self.class_names:
            raise ValueError(f"There is already a class named {removal.name!r}.")
        self.check_unchanged()
        self.class_names.insert(removal.class_id, removal.name)
        self.class_colors.insert(removal.class_id, removal.color)
        self.save()

        def put_back(ls: LabelSet, path: Path) -> bool:
            ids = np.asarray(removal.masks.get(path, []), np.int64)
            if path == skip or ids.size == 0 or removal.name in ls.class_names:
                return False
            ids = ids[(ids < len(ls.classes))]
            ids = ids[ls.classes[ids] == 0]  # still unassigned, as the removal left them
            ls.assign_class(ids, ls.add_class(removal.name, removal.color))
            return True

        return self._rewrite_files(put_back)

    def _rewrite_files(self, change: Callable[[LabelSet, Path], bool]) -> list[Path]:
        """Apply *change* to every label file of the folder (those it returns ``True`` for are written)."""
        changed = []
        for path in sorted(self.folder.glob("*_seg.npy")) + sorted(self.folder.glob("*_pred.npy")):
            version = FileVersion.of(path)
            try:
                ls = load_labels(path)
            except Exception:
                continue  # an unreadable or refused file is left as it is
            if not change(ls, path):
                continue
            try:
                write_unless_changed(path, version, lambda: save_labels(path, ls, image_path=_image_of(path)))
            except FileChangedError as exc:
                log.warning("class change not applied: %s", exc)
                continue
            changed.append(path)
        return changed


def _image_of(label_file: Path) -> Path | None:
    """The image a label file names in its ``filename`` entry."""
    name = read_label_dict(label_file).get("filename")
    return Path(name) if isinstance(name, str) and name else None


def _rename(ls: LabelSet, old: str, new: str) -> bool:
    if old not in ls.class_names:
        return False
    ls.class_names[ls.class_names.index(old)] = new
    return True


class Recent:
    """Recently opened folders, newest first, kept in ``<home>/recent.json``."""

    def __init__(self, home: Path, limit: int = 10) -> None:
        self.path = home / "recent.json"
        self.limit = limit

    def list(self) -> list[Path]:
        try:
            return [Path(p) for p in json.loads(self.path.read_text()) if Path(p).is_dir()]
        except (OSError, ValueError):
            return []

    def add(self, folder: Path) -> None:
        folders = [str(folder)] + [str(p) for p in self.list() if p != folder]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(folders[: self.limit]))
