"""Training data from a folder of images with labels: samples, class mapping, seeded split, flows.

Every frame of every image in the folder that has labels (``_seg.npy``, ``__S0_T1_seg.npy`` for
frames, or a ``_masks``/``_classes`` TIFF pair) becomes one :class:`Sample`. Classes are matched
to the model's class channels by name (unnamed classes of ``_classes`` TIFFs by id); masks left
"unassigned" (class 0) take part in the segmentation loss but not in the class loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from cellpose import dynamics, utils

from .errors import LabelFileError, ParameterError
from .io import list_images, open_image
from .labels import LabelSet, default_color, load_labels_for
from .preprocess import prepare_image

log = logging.getLogger(__name__)
#: Class target of pixels that take no part in the class loss (masks with no class).
IGNORE = -1
#: Upper bound of a class weight relative to the mean, so a rare class cannot explode the loss.
MAX_CLASS_WEIGHT = 10.0


@dataclasses.dataclass
class Sample:
    """One labelled frame, ready for training.

    Attributes
    ----------
    image
        ``(3, Y, X)`` float32, channels picked and normalised.
    target
        ``(4, Y, X)`` float32: model class per pixel (:data:`IGNORE` on unassigned masks), cell
        probability, flow Y, flow X (cellpose's ``labels_to_flows``).
    masks
        ``(Y, X)`` instance ids.
    classes
        Model class per mask id (:data:`IGNORE` where unknown).
    source, frame
        Image file and frame id the sample came from.
    """

    image: np.ndarray
    target: np.ndarray
    masks: np.ndarray
    classes: np.ndarray
    source: str
    frame: str
    digest: str

    @property
    def n_masks(self) -> int:
        return int(len(np.unique(self.masks)) - 1)

    @property
    def diameter(self) -> float:
        """Median object diameter (cellpose's ``utils.diameters``), at least 5 pixels."""
        return max(float(utils.diameters(self.masks)[0]), 5.0)


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


def class_lookup(labelset: LabelSet, class_names: Sequence[str]) -> np.ndarray:
    """Model class per mask id of *labelset*: classes matched by name, unnamed ones by id.

    :data:`IGNORE` for unassigned masks and for classes the model does not have.
    """
    index = {name: i for i, name in enumerate(class_names) if i}
    per_file = [IGNORE]
    for cid, name in enumerate(labelset.class_names[1:], start=1):
        found = index.get(name, IGNORE)
        if found == IGNORE and _unnamed(name, cid) and cid < len(class_names):
            found = cid
        per_file.append(found)
    table = np.array(per_file, np.int64)
    cls = np.asarray(labelset.classes, np.int64)
    return np.where(cls < len(table), table[np.minimum(cls, len(table) - 1)], IGNORE)


def make_sample(image: np.ndarray, labelset: LabelSet, class_names: Sequence[str], channels: Sequence[int] | None = None,
                normalize: tuple[float, float] = (1.0, 99.0), source: str = "", frame: str = "",
                device=None) -> Sample:
    """A training sample from an image frame and its labels (flows computed with cellpose)."""
    if image.shape[:2] != labelset.shape:
        raise ParameterError(f"{source or 'image'} {frame}: labels are {labelset.shape} but the image is {image.shape[:2]}.")
    masks = labelset.masks.astype(np.int32)
    classes = class_lookup(labelset, class_names) if len(class_names) > 1 else np.zeros(len(labelset.classes), np.int64)
    class_map = np.where(masks > 0, classes[masks], 0).astype(np.float32)
    flows = dynamics.labels_to_flows([masks.copy()], device=device)[0]  # renumbered masks, cellprob, flow Y, flow X
    target = np.concatenate([class_map[None], flows[1:]], axis=0).astype(np.float32)
    prepared = np.moveaxis(prepare_image(image, channels, normalize), -1, 0)
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + masks.tobytes() + classes.tobytes()).hexdigest()
    return Sample(np.ascontiguousarray(prepared), target, masks, classes, source, frame, digest)


def load_samples(folder: str | os.PathLike, class_names: Sequence[str] | None = None, channels: Sequence[int] | None = None,
                 normalize: tuple[float, float] = (1.0, 99.0), device=None,
                 on_item: Callable[[int, int], None] | None = None) -> tuple[list[Sample], list[str], list[str]]:
    """Every labelled frame of *folder* as a sample.

    Parameters
    ----------
    class_names
        The model's classes; ``None`` or one name: take the classes found in the files.
    on_item
        Called with ``(done, total)`` after each frame (progress).

    Returns
    -------
    samples, class_names, class_colors
    """
    frames = labelled_frames(folder)
    names, colors = merged_class_names([ls for _, _, ls in frames], class_names or ())
    samples = []
    for i, (path, frame, labels) in enumerate(frames):
        with open_image(path) as src:
            image = src.read(frame)
        samples.append(make_sample(image, labels, names, channels, normalize, str(path), frame, device))
        if on_item:
            on_item(i + 1, len(frames))
    return samples, names, colors


def split(samples: Sequence[Sample], test_ratio: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded train/test split; with a ratio > 0 and two or more samples both sides get at least one."""
    n = len(samples)
    if test_ratio <= 0 or n < 2:
        return list(samples), []
    n_test = min(max(1, int(round(test_ratio * n))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    test = set(order[:n_test].tolist())
    return [s for i, s in enumerate(samples) if i not in test], [s for i, s in enumerate(samples) if i in test]


def class_weights(samples: Sequence[Sample], n_classes: int) -> np.ndarray:
    """Per-class loss weights: inverse square root of pixel frequency, mean 1 per pixel, capped.

    The square root (rather than the plain inverse) and the cap at :data:`MAX_CLASS_WEIGHT`
    keep a class with few pixels from dominating the loss; add-one counts keep absent classes finite.
    """
    counts = np.ones(n_classes, np.float64)
    for s in samples:
        cmap = s.target[0].astype(np.int64).ravel()
        counts += np.bincount(cmap[cmap >= 0], minlength=n_classes)[:n_classes]
    freq = counts / counts.sum()
    w = freq ** -0.5
    w /= (freq * w).sum()
    return np.minimum(w, MAX_CLASS_WEIGHT).astype(np.float32)
