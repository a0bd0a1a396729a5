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

import numpy as np
from cellpose import dynamics, utils

from .classmap import class_lookup, labelled_frames, merged_class_names
from .errors import ParameterError
from .io import open_image
from .labels import LabelSet
from .preprocess import prepare_image

log = logging.getLogger(__name__)
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
        ``(4, Y, X)`` float32: model class per pixel (:data:`~mcp_core.classmap.IGNORE` on unassigned masks), cell
        probability, flow Y, flow X (cellpose's ``labels_to_flows``).
    masks
        ``(Y, X)`` instance ids.
    classes
        Model class per mask id (:data:`~mcp_core.classmap.IGNORE` where unknown).
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
