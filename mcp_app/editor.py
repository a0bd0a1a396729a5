"""The editing session behind a canvas: one frame's image and labels, edits as patches, autosave.

Pure Python (no UI): pages call these methods from canvas events and send the returned
:class:`Patch` to the browser. Labels are the source of truth here; the browser only draws.
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mcp_core.classmap import remap_classes
from mcp_core.file_version import FileVersion, write_unless_changed
from mcp_core.filenames import LabelKind, label_path
from mcp_core.io import open_image
from mcp_core.labels import LabelSet, load_labels_for, save_labels
from mcp_core.labels.polygon import polygon_box
from mcp_core.prefetch import Prefetcher
from mcp_core.pyramid import TILE, Pyramid, open_pyramid

from .project import Item, Project


@dataclass
class Patch:
    """What the browser must redraw: the box's label ids, as runs along its rows (``run_ids``, ``run_lengths``) when
    that is at least 4x shorter (a new mask's box) or else raw uint32 (``data``, base64), or the ids whose pixels in
    the box became background (``cleared``: a deletion, no pixels sent), and maybe the class table; ``ms``: the
    server's time on the edit (the page notes it beside its own, to show where an edit's time goes)."""

    x: int
    y: int
    w: int
    h: int
    data: str = ""
    run_ids: list[int] | None = None
    run_lengths: list[int] | None = None
    classes: list[int] | None = None
    colors: list[str] | None = None
    cleared: list[int] | None = None
    ms: float | None = None

    def ids(self) -> np.ndarray:
        """The box's label ids, ``(h, w)`` (zeros for a patch that sends none)."""
        if self.run_ids is not None:
            return np.repeat(np.asarray(self.run_ids, np.uint32), self.run_lengths).reshape(self.h, self.w)
        if self.data:
            return np.frombuffer(base64.b64decode(self.data), "<u4").reshape(self.h, self.w)
        return np.zeros((self.h, self.w), np.uint32)

    def to_dict(self) -> dict:
        """The fields that are set, by the names the page reads (``runIds``, ``runLengths``)."""
        names = {"run_ids": "runIds", "run_lengths": "runLengths"}
        return {names.get(k, k): v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Frame:
    """One item as read from disk, with its pixels and labels already encoded for the browser."""

    image: np.ndarray | None  # None: a large image, read by levels and tiles only, never whole
    pyramid: Pyramid
    labels: LabelSet  # the project's classes (when it knew them all at reading time); indexed boxes
    file_version: FileVersion | None  # of the label file before it was read (None: there was none)
    image_stamp: tuple[int, int]  # (size, mtime_ns) of the image file
    pixel_blob: bytes
    label_blob: bytes
    box_blob: bytes
    extremes: tuple[list[float], float] | None  # each channel's minimum and the image's maximum (None: large)


#: Longest side of the level the browser gets first (about a screen's width); finer levels of a larger image come
#: as tiles where the view needs them, when zoomed in.
OVERVIEW_SIDE = 1024


@dataclass
class Display:
    """How the image is shown: which channel feeds red, green and blue, and per-channel contrast."""

    rgb: list[int | None] = field(default_factory=lambda: [0, 1, 2])
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)


class Editor:
    """Edit the labels of one item at a time, of kind ``"seg"`` (labels) or ``"pred"`` (predictions)."""

    def __init__(self, project: Project, kind: LabelKind = "seg") -> None:
        self.project = project
        self.kind = kind
        self.item: Item | None = None
        self.image: np.ndarray | None = None  # the whole frame; None for a large image (see :attr:`pyramid`)
        #: Each channel's minimum and :attr:`image`'s maximum (the contrast sliders' ranges), found with the read
        self.extremes: tuple[list[float], float] | None = None
        self.pyramid: Pyramid | None = None  # levels of the frame for display
        self.labels: LabelSet | None = None
        self.display = Display()
        self.edits = 0  # edits made since opening ...
        self.saved_edits = 0  # ... and how many of them are on disk
        self.version = 0
        self.file_version: FileVersion | None = None  # of the label file as read (None: there was none)
        self.action: str | None = None  # what the next save records in the annotation history ("model run with M")
        self._lock = threading.Lock()
        self._ahead: Prefetcher[tuple[Path, str], Frame] = Prefetcher(self._read, fresh=self._fresh)
        self._blobs: dict[str, tuple[int, bytes]] = {}  # "pixels"/"labels"/"boxes": (edits when encoded, gzip bytes)

    # --------------------------------------------------------------------- open
    @property
    def dirty(self) -> bool:
        """Whether there are edits not yet on disk (an edit made while a save runs stays unsaved)."""
        return self.edits != self.saved_edits

    @property
    def label_file(self) -> Path | None:
        return label_path(self.item.path, self.item.frame, self.kind) if self.item else None

    def open(self, item: Item) -> None:
        """Load an item's image and labels (empty labels if it has none). Call :meth:`save` first.

        An item asked for with :meth:`prefetch` is taken as read and encoded then, unless its files changed since.
        """
        frame = self._ahead.take((item.path, item.frame))
        labels = frame.labels
        if (labels.class_names, labels.class_colors) != (self.project.class_names, self.project.class_colors):
            labels = self.project.adopt(labels)  # the file names classes the project lacked (or it changed since)
            labels.index_boxes()  # now, so edits touch only their boxes
        self.item, self.image, self.pyramid, self.labels = item, frame.image, frame.pyramid, labels
        self.file_version, self.extremes = frame.file_version, frame.extremes
        self._blobs = {"pixels": (self.edits, frame.pixel_blob), "labels": (self.edits, frame.label_blob),
                       "boxes": (self.edits, frame.box_blob)}
        self.saved_edits = self.edits
        self.version += 1
        n = self.overview.shape[2]
        if len(self.display.low) != n:
            self.display = Display(rgb=[0, 1 if n > 1 else None, 2 if n > 2 else None])
            self.auto_contrast()

    def prefetch(self, items: Sequence[Item]) -> None:
        """Read and encode *items* on a background thread (the neighbours of the open item), for :meth:`open`."""
        self._ahead.want([(item.path, item.frame) for item in items])

    def close(self) -> None:
        """Stop reading ahead and drop what was read (the page is gone)."""
        self._ahead.close()

    def _read(self, key: tuple[Path, str]) -> Frame:
        """Read one item's image and labels and encode both for the browser (runs on the prefetch thread)."""
        path, frame = key
        stamp = _stamp(path)
        pyramid = open_pyramid(path, frame)
        if pyramid is not None and max(pyramid.shape) > OVERVIEW_SIDE:
            image = None  # large: the browser gets a coarser level and tiles where zoomed in
        else:
            with open_image(path) as src:
                image = src.read(frame)
            pyramid = Pyramid.of_array(image)
        file_version = FileVersion.of(label_path(path, frame, self.kind))  # before reading: a write in between
        loaded = load_labels_for(path, frame, self.kind)  # shows as a change at save time
        names, colors = list(self.project.class_names), list(self.project.class_colors)
        if loaded is None:
            labels = LabelSet(np.zeros(pyramid.shape, np.uint16), None, names, colors)
        elif set(loaded.class_names[1:]) <= set(names):  # adopting changes nothing in the project
            labels = self.project.adopt(loaded)
        else:
            labels = loaded  # adopted on open, where the project may learn the new classes
        if labels.shape != pyramid.shape:
            raise ValueError(f"The labels in {label_path(path, frame, self.kind).name} have shape "
                             f"{labels.shape} but the image is {pyramid.shape}; the file was left untouched.")
        labels.index_boxes()
        overview = pyramid.read(pyramid.level_within(OVERVIEW_SIDE))
        extremes = None if image is None else ([float(image[..., c].min()) for c in range(image.shape[2])],
                                               float(image.max()))
        return Frame(image, pyramid, labels, file_version, stamp, encode_pixels(overview), encode_labels(labels.masks),
                     encode_boxes(labels), extremes)

    def _fresh(self, key: tuple[Path, str], frame: Frame) -> bool:
        """Whether the image and label files still have the size and modification time they had when *frame* was
        read (no hash of the labels while the user waits: a save still compares their contents, see :meth:`save`)."""
        path, name = key
        version = frame.file_version
        return _stamp(path) == frame.image_stamp and _stamp_or_none(label_path(path, name, self.kind)) == (
            None if version is None else (version.size, version.mtime_ns))

    # ------------------------------------------------------------------ display
    @property
    def overview_level(self) -> int:
        """The level the browser gets first: the finest whose longer side is at most :data:`OVERVIEW_SIDE`."""
        return self.pyramid.level_within(OVERVIEW_SIDE)

    @property
    def overview(self) -> np.ndarray:
        """The pixels of :attr:`overview_level` as ``(Y, X, C)``."""
        return self.pyramid.read(self.overview_level)

    def auto_contrast(self, low_pct: float = 1.0, high_pct: float = 99.8) -> None:
        img = self.overview
        sub = img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)]
        self.display.low = [float(np.percentile(sub[..., c], low_pct)) for c in range(img.shape[2])]
        self.display.high = [float(max(np.percentile(sub[..., c], high_pct), self.display.low[c] + 1e-6))
                             for c in range(img.shape[2])]

    @property
    def pixel_dtype(self) -> str:
        """The type the browser gets the channels in: ``uint8``/``uint16`` as they are, anything else ``float32``."""
        return pixel_dtype(self.overview)

    def pixel_info(self) -> dict:
        """What the canvas needs to read :meth:`pixel_bytes` and show it: size, channels, type and display, and the
        levels (``[h, w]`` each, full resolution first) with the one :meth:`pixel_bytes` sends and the tile size."""
        (h, w), n = self.pyramid.shape, self.overview.shape[2]
        return {"width": w, "height": h, "channels": n, "dtype": self.pixel_dtype, "display": asdict(self.display),
                "levels": [list(shape) for shape in self.pyramid.shapes], "level": self.overview_level, "tile": TILE}

    def pixel_bytes(self) -> bytes:
        """The raw channels of :attr:`overview`, planar ``(C, Y, X)`` little-endian :attr:`pixel_dtype`, gzip-compressed.

        The browser maps them through the contrast limits itself, so a contrast change needs no round trip.
        """
        return self._blob("pixels", lambda: encode_pixels(self.overview))

    def tile_bytes(self, level: int, ty: int, tx: int) -> bytes:
        """One :data:`~mcp_core.pyramid.TILE`-pixel tile of a level, encoded as :meth:`pixel_bytes`.

        Raises
        ------
        IndexError
            When the level or the tile does not exist.
        """
        return encode_pixels(self.pyramid.tile(level, ty, tx))

    def label_bytes(self) -> bytes:
        """All label ids, gzip-compressed, as :func:`encode_labels` (the browser's label buffer)."""
        return self._blob("labels", lambda: encode_labels(self.labels.masks))

    def box_bytes(self) -> bytes:
        """Every mask's bounding box, gzip-compressed, as :func:`encode_boxes` (the page's boxes)."""
        return self._blob("boxes", lambda: encode_boxes(self.labels))

    def _blob(self, name: str, encode) -> bytes:
        """An encoding made once per state of the labels (read ahead with the item, or made again after edits)."""
        edits, blob = self._blobs.get(name, (None, b""))
        if edits != self.edits:
            blob = encode()
            self._blobs[name] = (self.edits, blob)
        return blob

    def class_counts(self) -> list[int]:
        """How many masks of each class id the open frame has."""
        n = len(self.labels.class_names)
        return np.bincount(self.labels.classes[self.labels.ids], minlength=n)[:n].tolist()

    def class_table(self) -> tuple[list[int], list[str]]:
        return self.labels.classes.astype(int).tolist(), list(self.labels.class_colors)

    # -------------------------------------------------------------------- edits
    def add_polygon(self, points: Sequence[Sequence[float]], class_id: int) -> Patch | None:
        new = self.labels.add_polygon(points, class_id)
        return self._patch_ids([new], classes=True) if new else None

    def delete(self, ids: Sequence[int]) -> Patch | None:
        box = self._box_of(ids)
        if box is None or not self.labels.delete(ids):
            return None
        patch = self._patch(box, classes=True, data=False)
        patch.cleared = [int(i) for i in ids]
        return patch

    def assign(self, ids: Sequence[int], class_id: int) -> Patch | None:
        box = self._box_of(ids)
        if box is None:
            return None
        self.labels.assign_class(ids, class_id)
        return self._patch(box, classes=True, data=False)

    def lasso(self, points: Sequence[Sequence[float]], min_fraction: float = 0.5) -> Patch | None:
        """Delete every mask with at least *min_fraction* of its pixels inside the lasso (the pixels
        :func:`~mcp_core.labels.polygon.polygon_box` fills, as for a contour: the page finds the same masks)."""
        pts = np.asarray(points, float).reshape(-1, 2)
        filled = polygon_box(pts[:, 1], pts[:, 0], self.labels.shape) if len(pts) >= 3 else None
        if filled is None:
            return None
        box, inside = filled
        counts = np.bincount(self.labels.masks[box][inside].astype(np.int64), minlength=self.labels.max_id + 1)
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        if ids.size == 0:
            return None
        frac = counts[ids] / np.maximum(self.labels.areas(ids), 1)
        return self.delete(ids[frac >= min_fraction].tolist())

    def erase(self, points: Sequence[Sequence[float]], radius: float) -> Patch | None:
        """Erase along a stroke; pieces a mask falls into become masks of their own (new ids: the class table too)."""
        if not self.labels.erase(np.asarray(points, float).reshape(-1, 2), radius):
            return None
        return self._patch(self.labels.last_edit_box, classes=True)

    def split(self, mask_id: int, points: Sequence[Sequence[float]]) -> Patch | None:
        box = self._box_of([mask_id])
        ids = self.labels.split(mask_id, points)
        if len(ids) < 2:
            return None
        return self._patch(box, classes=True)

    def replace(self, masks: np.ndarray, classes: np.ndarray, class_names: Sequence[str], keep_existing: bool) -> Patch:
        """Put a model's result in as one undoable edit; its classes are matched to the project's by name."""
        self.project.merge_class_names(list(class_names))
        known = self.project.class_names
        mapped = remap_classes(classes, class_names, known)
        self.labels.class_names, self.labels.class_colors = list(known), list(self.project.class_colors)
        self.labels.replace(masks, mapped, keep_existing=keep_existing)
        return self._patch((slice(0, self.labels.shape[0]), slice(0, self.labels.shape[1])), classes=True)

    def undo(self) -> Patch | None:
        return self._history(self.labels.undo)

    def redo(self) -> Patch | None:
        return self._history(self.labels.redo)

    def rename_class(self, class_id: int, name: str) -> Patch:
        """Rename a class of the open labels (its masks keep it)."""
        self.labels.class_names[class_id] = name
        return self._patch((slice(0, 0), slice(0, 0)), classes=True, data=False)

    def remove_class(self, class_id: int) -> Patch:
        """Remove a class from the open labels as one undoable edit: its masks become unassigned."""
        self.labels.remove_class(class_id)  # higher class ids shift down: every mask may change colour
        return self._patch((slice(0, self.labels.shape[0]), slice(0, self.labels.shape[1])), classes=True, data=False)

    def set_class_list(self, names: list[str], colors: list[str]) -> Patch:
        """Adopt the project's (edited) class list; class ids of masks are remapped by name."""
        self.labels = self.project.adopt(self.labels) if names == self.project.class_names else self.labels
        self.labels.class_names, self.labels.class_colors = list(names), list(colors)
        self.edits += 1
        return self._patch((slice(0, self.labels.shape[0]), slice(0, self.labels.shape[1])), classes=True, data=False)

    # --------------------------------------------------------------------- save
    def save(self, force: bool = False) -> Path | None:
        """Write the labels if they changed (atomic); returns the file written.

        Parameters
        ----------
        force
            Overwrite even when the file changed on disk since it was opened ("keep mine").

        Raises
        ------
        FileChangedError
            When another writer changed the file since it was opened (it is left as it is).
        """
        with self._lock:
            if not self.dirty or self.labels is None:
                return None
            path, edits = self.label_file, self.edits
            self.file_version = write_unless_changed(
                path, self.file_version,
                lambda: save_labels(path, self.labels, image_path=self.item.path, action=self.action), force)
            self.saved_edits, self.action = edits, None
            return path

    def reload(self) -> None:
        """Drop the unsaved edits and read the current item's files again ("reload theirs")."""
        with self._lock:
            self.saved_edits = self.edits
        self.open(self.item)

    # ---------------------------------------------------------------- internals
    def _history(self, step) -> Patch | None:
        classes_before = self.labels.classes.copy()
        box = step()
        if box is None:
            return None
        if box[0].stop == box[0].start:  # class-table-only edit: redraw the masks whose class changed
            changed = np.flatnonzero(classes_before[: len(self.labels.classes)] != self.labels.classes[: len(classes_before)])
            box = self._box_of(changed.tolist()) or (slice(0, 0), slice(0, 0))
            return self._patch(box, classes=True, data=False)
        return self._patch(box, classes=True)

    def _box_of(self, ids: Sequence[int]) -> tuple[slice, slice] | None:
        return self.labels.box_of(ids)

    def _patch_ids(self, ids: Sequence[int], classes: bool) -> Patch:
        return self._patch(self._box_of(ids), classes=classes)

    def _patch(self, box: tuple[slice, slice], classes: bool = False, data: bool = True) -> Patch:
        self.edits += 1
        y, x = box[0].start, box[1].start
        h, w = box[0].stop - y, box[1].stop - x
        patch = Patch(x, y, w, h)
        if data and h > 0 and w > 0:
            _put_ids(patch, self.labels.masks[box])
        if classes:
            patch.classes, patch.colors = self.class_table()
        return patch


def _put_ids(patch: Patch, ids: np.ndarray) -> None:
    """Give *patch* the box's *ids* as runs along its rows when that is at least 4x shorter than raw (a run: two
    numbers of JSON; a pixel: 5.3 characters of base64), else raw."""
    flat = ids.ravel()
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    if 4 * len(starts) <= flat.size:
        patch.run_ids = flat[starts].tolist()
        patch.run_lengths = np.diff(np.r_[starts, flat.size]).tolist()
    else:
        patch.data = base64.b64encode(flat.astype("<u4").tobytes()).decode("ascii")


def pixel_dtype(image: np.ndarray) -> str:
    """The type the browser gets the channels in: ``uint8``/``uint16`` as they are, anything else ``float32``."""
    return image.dtype.name if image.dtype.name in ("uint8", "uint16") else "float32"


def encode_pixels(image: np.ndarray) -> bytes:
    """The raw channels of a ``(Y, X, C)`` image, planar little-endian :func:`pixel_dtype`, gzip-compressed."""
    planar = np.moveaxis(image, -1, 0).astype(np.dtype(pixel_dtype(image)).newbyteorder("<"))
    return gzip.compress(np.ascontiguousarray(planar).tobytes(), compresslevel=1)


def encode_labels(masks: np.ndarray) -> bytes:
    """Label ids as gzip-compressed little-endian uint16 when *masks* holds them as 16-bit ids (every id below 65536,
    see :func:`~mcp_core.labels.labelset.mask_dtype`), else uint32; the browser tells the two apart by the length."""
    ids = np.ascontiguousarray(masks, "<u2" if masks.dtype.itemsize <= 2 else "<u4")
    return gzip.compress(ids.reshape(-1).view(np.uint8), compresslevel=1)  # the bytes, not a copy


def encode_boxes(labels: LabelSet) -> bytes:
    """Each mask id's bounding box as little-endian uint32 ``[y0, y1, x0, x1]`` (zeros: no such mask), one row per
    id of the class table, gzip-compressed: the page touches only a mask's box when it deletes or recolours it."""
    boxes = np.zeros((len(labels.classes), 4), "<u4")
    known = labels.boxes[: len(boxes)]
    boxes[: len(known)] = known
    return gzip.compress(boxes.tobytes(), compresslevel=1)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _stamp_or_none(path: Path) -> tuple[int, int] | None:
    try:
        return _stamp(path)
    except FileNotFoundError:
        return None
