"""Which frames of a folder are labelled, and how their classes map to a model's classes by name.

Torch-free, so that the remote client can pack a dataset without loading the training stack.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import LabelFileError
from .io import list_images, open_image
from .labels import LabelSet, default_color, load_labels_for

log = logging.getLogger(__name__)
#: Class target of pixels that take no part in the class loss (masks with no class).
IGNORE = -1


def labelled_frames(folder: str | os.PathLike) -> list[tuple[Path, str, LabelSet]]:
    """``(image, frame, labels)`` for every frame of *folder*'s images that has labels.

    A label file that cannot be read (damaged, or refused because its pickle names code) is
    logged as a warning and left out.

    Raises
    ------
    ImageReadError
        When *folder* is not a folder.
    """
    found = []
    for path in list_images(folder):
        with open_image(path) as src:
            frames = list(src.frames)
        for frame in frames:
            try:
                labels = load_labels_for(path, frame)
                if labels is None and len(frames) == 1 and frame:
                    labels = load_labels_for(path, "")
            except LabelFileError as exc:
                log.warning("skipped: %s", exc)
                continue
            if labels is not None:
                found.append((path, frame, labels))
    return found


def _unnamed(name: str, class_id: int) -> bool:
    """Whether *name* is the placeholder a label set gives a class that had no name (``"class 3"``)."""
    return name == f"class {class_id}"


def merged_class_names(labelsets: Sequence[LabelSet], given: Sequence[str] = (),
                       given_colors: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The model's class names: *given* when it names two or more, else every class found, in order.

    Index 0 is background, named as in the files ("unassigned"). Unnamed classes (``_classes`` TIFFs have ids, not
    names) keep their id. Fewer than two names means "no class head".
    """
    if len(given) > 1:
        names = list(given)
        colors = list(given_colors)[: len(names)]
        return names, colors + [default_color(i) for i in range(len(colors), len(names))]
    names = [labelsets[0].class_names[0] if labelsets else "unassigned"]  # the files' name for class 0
    colors = [default_color(0)]
    top_unnamed = 0
    for ls in labelsets:
        used = set(np.unique(ls.classes[ls.ids]).tolist()) if ls.count else set()
        for cid, name in enumerate(ls.class_names):
            if not cid or cid not in used:
                continue
            if _unnamed(name, cid):
                top_unnamed = max(top_unnamed, cid)
            elif name not in names:
                names.append(name)
                colors.append(ls.class_colors[cid] if cid < len(ls.class_colors) else default_color(len(names) - 1))
    while len(names) <= top_unnamed:
        names.append(f"class {len(names)}")
        colors.append(default_color(len(names) - 1))
    return (names, colors) if len(names) > 1 else ([], [])


def remap_classes(classes: np.ndarray, from_names: Sequence[str], to_names: Sequence[str],
                  missing: int = 0) -> np.ndarray:
    """Class ids in *from_names*' numbering, renumbered to *to_names* by name.

    The one class mapping of the project: training targets, a model's result put into a label
    file, and a label file adopted by a project all use it. Unnamed classes (``"class 3"``, from
    ``_classes`` TIFFs) that *to_names* lacks keep their id when it exists there; class 0
    (unassigned), unknown names and ids beyond *from_names* become *missing*.
    """
    index = {name: i for i, name in enumerate(to_names) if i}
    table = [missing]
    for cid, name in enumerate(list(from_names)[1:], start=1):
        found = index.get(name, missing)
        if found == missing and _unnamed(name, cid) and cid < len(to_names):
            found = cid
        table.append(found)
    lut = np.array(table, np.int64)
    cls = np.asarray(classes, np.int64)
    return np.where(cls < len(lut), lut[np.minimum(cls, len(lut) - 1)], missing)


def class_lookup(labelset: LabelSet, class_names: Sequence[str]) -> np.ndarray:
    """Model class per mask id of *labelset* (:func:`remap_classes`); :data:`IGNORE` for unassigned masks and
    for classes the model does not have."""
    return remap_classes(labelset.classes, labelset.class_names, class_names, IGNORE)
