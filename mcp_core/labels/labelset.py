"""The label set of one frame: instance masks, a class per mask, and the edits the canvas makes.

Overlap rule: a new polygon takes only pixels that belong to no mask yet; it never
overwrites an existing mask. Mask ids are ``1..n`` (0 = background); ``classes[i]`` is the
class id of mask ``i`` (0 = unassigned) and ``class_names[0]`` names that "unassigned"
class. Every edit records a sparse delta (changed pixel positions with old and new
values, plus the old and new class table) so undo/redo cost memory in proportion to the
edit, not to the image. The label set keeps every mask's bounding box (found once with
:func:`scipy.ndimage.find_objects`, then updated from each edit's changed pixels), so an edit
reads and writes only the boxes of the masks it touches. Change ``masks`` through these methods
only.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.draw import disk, line as draw_line

from ..errors import LabelFileError, ParameterError
from .polygon import polygon_box

#: Class colours by id. The first ones stay clear of pure red, green and blue, the colours the channels are shown
#: in, so masks stand out on a 2- or 3-channel image (1: cyan on red, 2: magenta on green, 3: yellow on blue).
DEFAULT_CLASS_COLORS = ("#808080", "#00e5ff", "#ff40ff", "#ffe119", "#ff8c00", "#ffffff", "#bcf60c", "#fabebe",
                        "#e6beff", "#aaffc3", "#9a6324", "#008080", "#911eb4", "#4363d8", "#e6194b", "#3cb44b")
UINT16_MAX_ID = np.iinfo(np.uint16).max


def default_color(class_id: int) -> str:
    """A distinct default colour for *class_id*."""
    return DEFAULT_CLASS_COLORS[class_id % len(DEFAULT_CLASS_COLORS)]


def mask_dtype(max_id: int) -> np.dtype:
    """``uint16`` while ids fit, ``uint32`` past 65535 objects."""
    return np.dtype(np.uint16) if max_id <= UINT16_MAX_ID else np.dtype(np.uint32)


@dataclass
class Delta:
    """One undoable edit: changed pixels inside ``box`` and the class tables before/after.

    ``removed_class`` is ``(class id, name, colour)`` when the edit removed a class from the class list.
    """

    box: tuple[slice, slice]
    flat: np.ndarray
    old: np.ndarray
    new: np.ndarray
    old_classes: np.ndarray
    new_classes: np.ndarray
    removed_class: tuple[int, str, str] | None = None

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes + self.old.nbytes + self.new.nbytes + self.old_classes.nbytes + self.new_classes.nbytes


@dataclass
class LabelSet:
    """Instance masks and their classes for one frame.

    Attributes
    ----------
    masks
        ``(Y, X)`` ``uint16`` (``uint32`` past 65535 objects), 0 = background.
    classes
        ``(max_id + 1,)`` class id per mask id; ``classes[0]`` is always 0.
    class_names, class_colors
        Name and ``#rrggbb`` colour per class id, index 0 being "unassigned".
    flows
        Optional cellpose-style flows (kept as given, saved for the upstream GUI).
    diameter, flow_threshold, cellprob_threshold
        Optional values saved with the labels.
    confidence
        The model's per-object scores ``{name: array indexed by mask id}`` (see
        :mod:`mcp_core.confidence`); an edit sets the scores of the objects it touches to ``nan``.
    max_undo
        How many edits undo remembers.
    """

    masks: np.ndarray
    classes: np.ndarray | None = None
    class_names: list[str] = field(default_factory=lambda: ["unassigned"])
    class_colors: list[str] = field(default_factory=list)
    flows: list | None = None
    diameter: float = float("nan")
    flow_threshold: float | None = None
    cellprob_threshold: float | None = None
    max_undo: int = 200
    confidence: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 2:
            raise LabelFileError(f"masks must be 2-D (Y, X), got shape {masks.shape}.")
        if masks.dtype.kind not in "ui" or (masks.size and masks.min() < 0):
            raise LabelFileError(f"masks must hold non-negative integer ids, got dtype {masks.dtype}.")
        top = int(masks.max()) if masks.size else 0
        self.masks = np.ascontiguousarray(masks, dtype=mask_dtype(top))
        classes = np.zeros(top + 1, np.uint16) if self.classes is None else np.asarray(self.classes, np.uint16)
        if classes.ndim != 1:
            raise LabelFileError(f"classes must be 1-D (one class per mask id), got shape {classes.shape}.")
        if len(classes) < top + 1:
            classes = np.concatenate([classes, np.zeros(top + 1 - len(classes), np.uint16)])
        self.classes = classes.copy()
        self.classes[0] = 0
        self.class_names = list(self.class_names) or ["unassigned"]
        colors = list(self.class_colors)
        self.class_colors = colors + [default_color(i) for i in range(len(colors), len(self.class_names))]
        if int(self.classes.max(initial=0)) >= len(self.class_names):
            self.class_names += [f"class {i}" for i in range(len(self.class_names), int(self.classes.max()) + 1)]
            self.class_colors += [default_color(i) for i in range(len(self.class_colors), len(self.class_names))]
        self._undo: collections.deque[Delta] = collections.deque(maxlen=self.max_undo)
        self._redo: list[Delta] = []
        self._boxes: np.ndarray | None = None  # (n, 4) [y0, y1, x0, x1] per mask id (zeros: absent), found on first use

    # ----------------------------------------------------------------- queries
    @property
    def shape(self) -> tuple[int, int]:
        return self.masks.shape  # type: ignore[return-value]

    @property
    def max_id(self) -> int:
        return len(self.classes) - 1

    @property
    def ids(self) -> np.ndarray:
        """Mask ids present in ``masks`` (sorted)."""
        boxes = self._index()
        return np.flatnonzero(boxes[:, 1] > boxes[:, 0])

    @property
    def boxes(self) -> np.ndarray:
        """Every mask id's bounding box as a row ``[y0, y1, x0, x1]`` (zeros: no such mask; rows past :attr:`max_id`
        may follow, all zeros); not to be changed."""
        return self._index()

    def index_boxes(self) -> None:
        """Find every mask's bounding box now (one pass over the masks; otherwise done on first need)."""
        self._index()

    def areas(self, ids: Iterable[int] | None = None) -> np.ndarray:
        """Pixels per mask id: of *ids* (0 for absent ids, read from their boxes only), or of every id ``0..max_id``."""
        if ids is None:
            return np.bincount(self.masks.ravel(), minlength=self.max_id + 1).astype(np.int64)
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), np.int64)
        boxes = self._index()
        ok = (ids > 0) & (ids < len(boxes))
        box = self.box_of(ids[ok])
        if box is None:
            return np.zeros(len(ids), np.int64)
        counts = np.bincount(self.masks[box].ravel(), minlength=len(boxes))  # every id in the box: no lookup
        return np.where(ok, counts[np.where(ok, ids, 0)], 0)

    def box_of(self, ids: Iterable[int], pad: int = 0) -> tuple[slice, slice] | None:
        """The bounding box of masks *ids* as ``(rows, cols)`` slices, grown by *pad* (``None`` when none exists)."""
        ids = self._valid_ids(ids)
        boxes = self._index()
        b = boxes[ids[ids < len(boxes)]]
        b = b[b[:, 1] > b[:, 0]]
        if len(b) == 0:
            return None
        h, w = self.shape
        return (slice(max(int(b[:, 0].min()) - pad, 0), min(int(b[:, 1].max()) + pad, h)),
                slice(max(int(b[:, 2].min()) - pad, 0), min(int(b[:, 3].max()) + pad, w)))

    @property
    def count(self) -> int:
        return len(self.ids)

    def class_map(self) -> np.ndarray:
        """``(Y, X)`` class id of every pixel (0 on background and unassigned masks)."""
        return self.classes[self.masks]

    def class_of(self, mask_id: int) -> int:
        return int(self.classes[mask_id]) if 0 < mask_id < len(self.classes) else 0

    def copy(self) -> LabelSet:
        """A copy without undo history (with the masks' boxes, when found already)."""
        copied = LabelSet(self.masks.copy(), self.classes.copy(), list(self.class_names), list(self.class_colors),
                          self.flows, self.diameter, self.flow_threshold, self.cellprob_threshold, self.max_undo,
                          {k: v.copy() for k, v in self.confidence.items()} if self.confidence else None)
        copied._boxes = None if self._boxes is None else self._boxes.copy()
        return copied

    # ------------------------------------------------------------------ classes
    def add_class(self, name: str, color: str | None = None) -> int:
        """Append a class; returns its id."""
        if name in self.class_names:
            raise ParameterError(f"A class named {name!r} exists already.")
        self.class_names.append(name)
        self.class_colors.append(color or default_color(len(self.class_names) - 1))
        return len(self.class_names) - 1

    def remove_class(self, class_id: int) -> None:
        """Remove a class: its masks become unassigned (0) and higher class ids shift down by one.

        Undoable: undo puts the class back in the class list and its masks back in it.
        """
        if not 0 < class_id < len(self.class_names):
            raise ParameterError(f"There is no class {class_id} to remove.")
        new = self.classes.copy()
        new[new == class_id] = 0
        new[new > class_id] -= 1
        self._record_classes(new)
        self._undo[-1].removed_class = (class_id, self.class_names[class_id], self.class_colors[class_id])
        del self.class_names[class_id]
        del self.class_colors[class_id]

    # -------------------------------------------------------------------- edits
    def add_polygon(self, points: Sequence[Sequence[float]], class_id: int = 0) -> int:
        """Fill a closed polygon ``[(x, y), ...]`` as a new mask on pixels no mask owns yet.

        Returns
        -------
        int
            The new mask id, or 0 when the polygon covers no free pixel.
        """
        pts = np.asarray(points, float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ParameterError("A polygon needs at least three (x, y) points.")
        filled = polygon_box(pts[:, 1], pts[:, 0], self.shape)
        er, ec = _outline_pixels(pts, self.shape)
        ys = [int(er.min()), int(er.max()) + 1] if er.size else []  # the box of the fill and the edges
        xs = [int(ec.min()), int(ec.max()) + 1] if ec.size else []
        if filled is not None:
            ys += [filled[0][0].start, filled[0][0].stop]
            xs += [filled[0][1].start, filled[0][1].stop]
        if not ys:
            return 0
        y0, x0 = min(ys), min(xs)
        box = (slice(y0, max(ys)), slice(x0, max(xs)))
        hit = np.zeros((max(ys) - y0, max(xs) - x0), bool)
        if filled is not None:
            (fy, fx), inside = filled
            hit[fy.start - y0:fy.stop - y0, fx.start - x0:fx.stop - x0] = inside
        hit[er - y0, ec - x0] = True
        hit &= self.masks[box] == 0  # only pixels no mask owns
        return self._paint(box, hit, self.max_id + 1, class_id)

    def add_mask(self, region: np.ndarray, class_id: int = 0) -> int:
        """Add a boolean ``(Y, X)`` region as a new mask on pixels no mask owns yet; returns its id or 0."""
        region = np.asarray(region, bool)
        if region.shape != self.shape:
            raise ParameterError(f"Region shape {region.shape} differs from the masks' {self.shape}.")
        free = region & (self.masks == 0)
        return self._paint((slice(0, self.shape[0]), slice(0, self.shape[1])), free, self.max_id + 1, class_id)

    def delete(self, ids: Iterable[int]) -> int:
        """Delete masks; returns how many pixels were cleared."""
        ids = self._valid_ids(ids)
        found = self._pixels_of(ids)
        if found is None:
            return 0
        box, flat = found
        new = self.classes.copy()
        new[ids] = 0
        return self._apply(box, flat, np.zeros(len(flat), self.masks.dtype), new, gone=ids)

    def assign_class(self, ids: Iterable[int], class_id: int) -> None:
        """Set the class of masks."""
        self._check_class(class_id)
        ids = self._valid_ids(ids)
        new = self.classes.copy()
        new[ids] = class_id
        self._record_classes(new)

    def merge(self, ids: Iterable[int]) -> int:
        """Merge masks into the smallest of their ids (which keeps its class); returns that id."""
        ids = self._valid_ids(ids)
        if ids.size < 2:
            return int(ids[0]) if ids.size else 0
        keep, others = int(ids.min()), ids[ids != ids.min()]
        found = self._pixels_of(others)
        if found is None:
            return keep
        box, flat = found
        new = self.classes.copy()
        new[others] = 0
        self._apply(box, flat, np.full(len(flat), keep, self.masks.dtype), new, gone=others)
        return keep

    def split(self, mask_id: int, line: Sequence[Sequence[float]]) -> list[int]:
        """Cut a mask along a polyline ``[(x, y), ...]``.

        Pixels on the line go to the nearest resulting piece; the largest piece keeps the id
        and every piece keeps the class.

        Returns
        -------
        list of int
            The ids of the pieces (just ``[mask_id]`` when the line does not cut it in two).
        """
        if mask_id not in set(self._valid_ids([mask_id]).tolist()):
            raise ParameterError(f"There is no mask {mask_id} to split.")
        box = self.box_of([mask_id], pad=1)
        sub = self.masks[box]
        region = sub == mask_id
        pts = np.asarray(line, float) - [box[1].start, box[0].start]
        cut = np.zeros_like(region)
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            rr, cc = draw_line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
            ok = (rr >= 0) & (rr < cut.shape[0]) & (cc >= 0) & (cc < cut.shape[1])
            cut[rr[ok], cc[ok]] = True
        pieces, n = ndimage.label(region & ~cut)
        if n < 2:
            return [mask_id]
        # Line pixels join the nearest piece.
        _, (ri, ci) = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
        pieces = np.where(region, pieces[ri, ci], 0)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        order = np.argsort(-sizes) + 1  # piece labels by size, largest first
        ids = [mask_id] + list(range(self.max_id + 1, self.max_id + n))
        lut = np.zeros(n + 1, np.int64)
        lut[order] = ids
        new_sub = np.where(region, lut[pieces], sub)
        changed = np.flatnonzero(new_sub != sub)
        new_classes = np.concatenate([self.classes, np.full(n - 1, self.classes[mask_id], np.uint16)])
        self._apply(box, changed, new_sub.ravel()[changed], new_classes)
        return ids

    def erase(self, points: Sequence[Sequence[float]], radius: float) -> int:
        """Erase with a round brush of *radius* along a stroke ``[(x, y), ...]``; returns pixels cleared.

        A mask the stroke cuts into more pieces than it had keeps its id on its largest piece; the
        other pieces become new masks of the same class (as :meth:`split` does), in the same edit.
        """
        if radius <= 0:
            raise ParameterError(f"Brush radius must be positive, got {radius}.")
        pts = np.asarray(points, float).reshape(-1, 2)
        r = int(np.ceil(radius)) + 1
        (x0, y0), (x1, y1) = np.floor(pts.min(axis=0)).astype(int) - r, np.ceil(pts.max(axis=0)).astype(int) + r + 1
        y0, x0 = max(y0, 0), max(x0, 0)
        y1, x1 = min(y1, self.shape[0]), min(x1, self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return 0
        stroke = (slice(y0, y1), slice(x0, x1))  # the brush's reach: every pixel it can clear
        brush = np.zeros((y1 - y0, x1 - x0), bool)
        prev = None
        for x, y in pts - [x0, y0]:
            steps = [(x, y)] if prev is None else np.linspace(prev, (x, y), max(2, int(np.hypot(x - prev[0], y - prev[1]) / max(radius / 2, 0.5)) + 1))
            for sx, sy in steps:
                rr, cc = disk((sy, sx), radius, shape=brush.shape)
                brush[rr, cc] = True
            prev = (x, y)
        tight = bbox_of(brush & (self.masks[stroke] > 0))
        if tight is None:
            return 0
        box = (slice(y0 + tight[0].start, y0 + tight[0].stop), slice(x0 + tight[1].start, x0 + tight[1].stop))
        hit = brush[tight] & (self.masks[box] > 0)
        touched = np.unique(self.masks[box][hit]).astype(np.int64)
        reach = self.box_of(touched)  # holds every pixel of the masks hit (and so the erased box)
        before = self.masks[reach]
        after = before.copy()
        after[box[0].start - reach[0].start:box[0].stop - reach[0].start,
              box[1].start - reach[1].start:box[1].stop - reach[1].start][hit] = 0
        new_classes = self._separate_pieces(before, after, touched)
        changed = np.flatnonzero(after != before)
        self._apply(reach, changed, after.ravel()[changed], new_classes)
        return int(hit.sum())

    def _separate_pieces(self, before: np.ndarray, after: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Give new ids to the smaller pieces of masks *ids* that fall apart (8-connected) from *before* to *after*.

        *after* is changed in place; returns the class table with the new masks (their pieces' class).
        """
        eight = np.ones((3, 3), bool)
        classes = [self.classes]
        next_id = self.max_id + 1
        for i in ids:
            pieces, n = ndimage.label(after == i, structure=eight)
            if n < 2 or n <= ndimage.label(before == i, structure=eight)[1]:
                continue
            order = np.argsort(-np.bincount(pieces.ravel(), minlength=n + 1)[1:], kind="stable") + 1
            lut = np.zeros(n + 1, np.int64)
            lut[order] = [i] + list(range(next_id, next_id + n - 1))
            after[pieces > 0] = lut[pieces[pieces > 0]]
            classes.append(np.full(n - 1, self.classes[i], np.uint16))
            next_id += n - 1
        return np.concatenate(classes)

    @property
    def last_edit_box(self) -> tuple[slice, slice] | None:
        """The box of pixels the last edit (on the undo stack) changed; ``None`` when there is none."""
        return self._undo[-1].box if self._undo else None

    def replace(self, masks: np.ndarray, classes: np.ndarray | None = None, keep_existing: bool = False) -> None:
        """Replace all masks (e.g. by a model run) as one undoable edit.

        Parameters
        ----------
        masks, classes
            The new masks and their class per id.
        keep_existing
            Keep current masks and add only new masks on free pixels (ids shifted past the current ones).
        """
        masks = np.asarray(masks)
        if masks.shape != self.shape:
            raise ParameterError(f"New masks have shape {masks.shape}, the image is {self.shape}.")
        top = int(masks.max(initial=0))
        classes = np.zeros(top + 1, np.uint16) if classes is None else np.asarray(classes, np.uint16)
        if keep_existing:
            offset = self.max_id
            shifted = np.where(masks > 0, masks.astype(np.int64) + offset, 0)
            target = np.where(self.masks > 0, self.masks, shifted)
            new_classes = np.concatenate([self.classes, classes[1:]])
        else:
            target = masks.astype(np.int64)
            new_classes = classes.copy()
        box = (slice(0, self.shape[0]), slice(0, self.shape[1]))
        changed = np.flatnonzero(target.ravel() != self.masks.ravel())
        self._apply(box, changed, target.ravel()[changed], new_classes)

    def renumber(self) -> dict[int, int]:
        """Make ids contiguous ``1..n`` in order of first appearance; returns ``{old: new}``."""
        ids = self.ids
        lut = np.zeros(len(self.classes), np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        new_classes = np.zeros(len(ids) + 1, np.uint16)
        new_classes[1:] = self.classes[ids]
        new = lut[self.masks]
        changed = np.flatnonzero(new.ravel() != self.masks.ravel())
        box = (slice(0, self.shape[0]), slice(0, self.shape[1]))
        self._apply(box, changed, new.ravel()[changed], new_classes)
        return {int(o): int(n) for o, n in zip(ids, range(1, len(ids) + 1))}

    # -------------------------------------------------------------- undo / redo
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> tuple[slice, slice] | None:
        """Undo the last edit; returns the box that changed (``None`` if nothing to undo)."""
        if not self._undo:
            return None
        d = self._undo.pop()
        self._write(d.box, d.flat, d.old)
        self.classes = d.old_classes.copy()
        if d.removed_class is not None:
            class_id, name, color = d.removed_class
            self.class_names.insert(class_id, name)
            self.class_colors.insert(class_id, color)
        self._redo.append(d)
        return d.box

    def redo(self) -> tuple[slice, slice] | None:
        """Redo the last undone edit; returns the box that changed."""
        if not self._redo:
            return None
        d = self._redo.pop()
        self._write(d.box, d.flat, d.new)
        self.classes = d.new_classes.copy()
        if d.removed_class is not None:
            del self.class_names[d.removed_class[0]]
            del self.class_colors[d.removed_class[0]]
        self._undo.append(d)
        return d.box

    @property
    def history_nbytes(self) -> int:
        """Memory held by undo and redo deltas."""
        return sum(d.nbytes for d in self._undo) + sum(d.nbytes for d in self._redo)

    # ---------------------------------------------------------------- internals
    def _check_class(self, class_id: int) -> None:
        if not 0 <= class_id < len(self.class_names):
            raise ParameterError(f"There is no class {class_id} (classes: {', '.join(self.class_names)}).")

    def _valid_ids(self, ids: Iterable[int]) -> np.ndarray:
        arr = np.unique(np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), np.int64))
        return arr[(arr > 0) & (arr < len(self.classes))]

    def _paint(self, box: tuple[slice, slice], hit: np.ndarray, new_id: int, class_id: int) -> int:
        """Make the *hit* pixels of *box* a new mask *new_id* of *class_id*; returns it, or 0 when none is hit."""
        tight = bbox_of(hit)
        if tight is None:
            return 0
        self._check_class(class_id)
        box = (slice(box[0].start + tight[0].start, box[0].start + tight[0].stop),
               slice(box[1].start + tight[1].start, box[1].start + tight[1].stop))
        flat = np.flatnonzero(hit[tight])  # each pixel once, in order
        new_classes = np.concatenate([self.classes, np.zeros(new_id + 1 - len(self.classes), np.uint16)])
        new_classes[new_id] = class_id
        self._apply(box, flat, np.full(len(flat), new_id, np.int64), new_classes)
        return new_id

    def _apply(self, box, flat: np.ndarray, values: np.ndarray, new_classes: np.ndarray,
               gone: np.ndarray | None = None) -> int:
        """Make an undoable edit: pixels *flat* of *box* become *values*, the class table *new_classes*; masks *gone*
        lose every pixel (their boxes are emptied without a look at the pixels)."""
        top = max(len(new_classes) - 1, int(values.max(initial=0)))
        if mask_dtype(top) != self.masks.dtype and top > UINT16_MAX_ID:
            self.masks = self.masks.astype(np.uint32)
        new = values.astype(self.masks.dtype)
        old = self._write(box, flat, new, gone)
        if self.confidence:
            self._forget_confidence(np.union1d(old, new))
        self._undo.append(Delta(box, flat.astype(np.int64), old, new, self.classes.copy(), new_classes.copy()))
        self._redo.clear()
        self.classes = new_classes.astype(np.uint16)
        return len(flat)

    def _forget_confidence(self, ids: np.ndarray) -> None:
        """Edited objects are no longer what the model scored."""
        for name, values in self.confidence.items():
            values = np.asarray(values, np.float32).copy()
            values[ids[(ids > 0) & (ids < len(values))].astype(np.int64)] = np.nan
            self.confidence[name] = values

    def _record_classes(self, new_classes: np.ndarray) -> None:
        empty = np.zeros(0, np.int64)
        self._undo.append(Delta((slice(0, 0), slice(0, 0)), empty, empty.astype(self.masks.dtype),
                                empty.astype(self.masks.dtype), self.classes.copy(), new_classes.copy()))
        self._redo.clear()
        self.classes = new_classes.astype(np.uint16)

    def _pixels_of(self, ids: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """The pixels of masks *ids*: their union box and sorted flat positions in it, read box by box."""
        box = self.box_of(ids)
        if box is None:
            return None
        boxes = self._index()
        ids = ids[ids < len(boxes)]
        b = boxes[ids]
        keep = b[:, 1] > b[:, 0]
        ids, b = ids[keep], b[keep]
        (y0, y1), (x0, x1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
        if _fills(b, (y0, y1, x0, x1)):
            lut = np.zeros(len(boxes), bool)  # one pass over the union box
            lut[ids] = True
            return box, np.flatnonzero(lut[self.masks[box]])
        parts = []
        for i, (by0, by1, bx0, bx1) in zip(ids, b):
            rr, cc = np.nonzero(self.masks[by0:by1, bx0:bx1] == i)
            parts.append((rr + by0 - y0) * (x1 - x0) + cc + bx0 - x0)
        return box, np.sort(np.concatenate(parts))

    def _index(self) -> np.ndarray:
        """Boxes of every mask id (one pass over the masks the first time)."""
        if self._boxes is None:
            found = ndimage.find_objects(self.masks)
            boxes = np.zeros((max(len(found) + 1, len(self.classes)), 4), np.int64)
            at = [i for i, sl in enumerate(found, start=1) if sl is not None]
            boxes[at] = np.array([(sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) for sl in found if sl is not None],
                                 np.int64).reshape(-1, 4)
            self._boxes = boxes
        return self._boxes

    def _write(self, box, flat: np.ndarray, values: np.ndarray, gone: np.ndarray | None = None) -> np.ndarray:
        """Set pixels *flat* of *box* to *values* and keep the boxes current; returns the old values."""
        if flat.size == 0:
            return values[:0].copy()
        sub = self.masks[box]
        if sub.flags.c_contiguous:
            old = sub.reshape(-1)[flat]
            sub.reshape(-1)[flat] = values
        else:
            rows, cols = np.unravel_index(flat, sub.shape)
            old = sub[rows, cols]
            sub[rows, cols] = values
        if self._boxes is not None:
            self._update_boxes(box, flat, old, values, gone)
        return old

    def _update_boxes(self, box, flat: np.ndarray, old: np.ndarray, new: np.ndarray,
                      gone: np.ndarray | None = None) -> None:
        """Boxes after pixels *flat* of *box* went from *old* to *new* ids (masks *gone* have none left)."""
        if 8 * flat.size >= self.masks.size:  # most of the image changed: find them all again on next use
            self._boxes = None
            return
        old, new = old.astype(np.int64), new.astype(np.int64)
        top = max(int(old.max()), int(new.max()), len(self.classes) - 1) + 1
        if top > len(self._boxes):  # room for more new masks than this one: not a copy of every box per new mask
            more = max(top - len(self._boxes), len(self._boxes) // 2)
            self._boxes = np.concatenate([self._boxes, np.zeros((more, 4), np.int64)])
        boxes = self._boxes
        width = box[1].stop - box[1].start
        at = np.flatnonzero(new > 0)  # grow each gaining mask's box by its new pixels
        if at.size:
            gained, r, c = new[at], flat[at] // width + box[0].start, flat[at] % width + box[1].start
            fresh = gained[boxes[gained, 1] <= boxes[gained, 0]]
            boxes[fresh] = (np.iinfo(np.int64).max, 0, np.iinfo(np.int64).max, 0)
            np.minimum.at(boxes[:, 0], gained, r)
            np.maximum.at(boxes[:, 1], gained, r + 1)
            np.minimum.at(boxes[:, 2], gained, c)
            np.maximum.at(boxes[:, 3], gained, c + 1)
        losing = np.zeros(len(boxes), bool)  # masks that lost pixels: find their boxes again, inside the old ones
        losing[old] = True
        losing[0] = False
        if gone is not None:
            boxes[gone] = 0
            losing[gone] = False
        lost = np.flatnonzero(losing)
        if lost.size == 0:
            return
        b = boxes[lost]
        region = (int(b[:, 0].min()), int(b[:, 1].max()), int(b[:, 2].min()), int(b[:, 3].max()))
        if _fills(b, region):
            y0, _, x0, _ = region
            lut = np.zeros(len(boxes), np.int64)
            lut[lost] = np.arange(1, len(lost) + 1)
            found = ndimage.find_objects(lut[self.masks[y0:region[1], x0:region[3]]], max_label=len(lost))
            offsets = [(y0, x0)] * len(lost)
        else:
            found, offsets = [], []
            for i, (y0, y1, x0, x1) in zip(lost, b):
                objs = ndimage.find_objects((self.masks[y0:y1, x0:x1] == i).view(np.uint8))
                found.append(objs[0] if objs else None)
                offsets.append((y0, x0))
        for i, sl, (y0, x0) in zip(lost, found, offsets):
            boxes[i] = 0 if sl is None else (sl[0].start + y0, sl[0].stop + y0, sl[1].start + x0, sl[1].stop + x0)


def _fills(boxes: np.ndarray, union: tuple[int, int, int, int]) -> bool:
    """Whether *boxes* cover enough of their *union* box that one pass over it beats reading box by box."""
    y0, y1, x0, x1 = union
    return 4 * int(((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).sum()) >= (y1 - y0) * (x1 - x0)


def bbox_of(mask: np.ndarray, pad: int = 0, shape: tuple[int, int] | None = None) -> tuple[slice, slice] | None:
    """Bounding box of the true pixels of a boolean image (``None`` when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    shape = shape or mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, shape[0])),
            slice(max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, shape[1])))


def _outline_pixels(pts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels on the closed polygon's edges, so thin polygons still fill."""
    rows, cols = [], []
    closed = np.vstack([pts, pts[:1]])
    for (x0, y0), (x1, y1) in zip(closed[:-1], closed[1:]):
        rr, cc = draw_line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
        rows.append(rr)
        cols.append(cc)
    rr, cc = np.concatenate(rows), np.concatenate(cols)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    return rr[ok], cc[ok]
