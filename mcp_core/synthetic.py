"""Reproducible synthetic microscopy: touching objects of 2-3 classes with ground truth.

Classes differ in shape, size, brightness and channel so that a model can learn them:

1. round, mid-sized, bright in channel 0;
2. elongated, dim in channel 0 and bright in channel 1;
3. small and dense, bright in both channels (with ``n_classes=3``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .labels import LabelSet, save_labels

CLASS_NAMES = ("unassigned", "round", "elongated", "small")


def make_sample(
    seed: int = 0,
    shape: tuple[int, int] = (256, 256),
    n_classes: int = 2,
    n_channels: int = 2,
    n_objects: int | None = None,
    dtype: str = "uint16",
) -> tuple[np.ndarray, LabelSet]:
    """One synthetic image and its ground-truth label set.

    Parameters
    ----------
    seed
        Same seed, same image.
    shape
        ``(Y, X)``.
    n_classes
        2 or 3 object classes.
    n_channels
        Channels of the image (>= 1); class cues are in channels 0 and 1.
    n_objects
        How many objects to try to place (default: by area, ~1 per 1400 px²).
    dtype
        ``"uint16"``, ``"uint8"`` or ``"float32"``.

    Returns
    -------
    image : ndarray (Y, X, C)
    labels : LabelSet
        Masks with a class per mask; ``class_names`` are ``CLASS_NAMES[:n_classes + 1]``.
    """
    if n_classes not in (2, 3):
        raise ValueError("n_classes must be 2 or 3")
    rng = np.random.default_rng(seed)
    h, w = shape
    n_objects = n_objects or max(4, int(h * w / 1400))
    masks = np.zeros(shape, np.uint32)
    classes = [0]
    yy, xx = np.mgrid[0:h, 0:w]
    next_id = 1
    for _ in range(n_objects * 3):
        if next_id > n_objects:
            break
        cls = int(rng.integers(1, n_classes + 1))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if cls == 1:
            a = b = rng.uniform(9, 13)
        elif cls == 2:
            a, b = rng.uniform(15, 20), rng.uniform(5, 7)
        else:
            a = b = rng.uniform(4.5, 6)
        theta = rng.uniform(0, np.pi)
        r0, r1 = int(max(cy - a - 1, 0)), int(min(cy + a + 2, h))
        c0, c1 = int(max(cx - a - 1, 0)), int(min(cx + a + 2, w))
        dy, dx = yy[r0:r1, c0:c1] - cy, xx[r0:r1, c0:c1] - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        p2, p3 = rng.uniform(0, 2 * np.pi, size=2)
        phi = np.arctan2(v / b, u / a)
        wobble = 1 + 0.08 * np.cos(2 * phi + p2) + 0.06 * np.cos(3 * phi + p3)  # not perfect ellipses
        inside = (u / a) ** 2 + (v / b) ** 2 <= wobble ** 2
        sub = masks[r0:r1, c0:c1]
        free = inside & (sub == 0)
        # Touching is allowed, heavy overlap is not: keep objects that keep most of their area.
        if inside.sum() < 12 or free.sum() < 0.75 * inside.sum():
            continue
        sub[free] = next_id
        classes.append(cls)
        next_id += 1
    masks = _keep_largest_piece(masks)
    img = _render(masks, np.asarray(classes), n_classes, n_channels, rng)
    img = _to_dtype(img, dtype)
    labels = LabelSet(masks, np.asarray(classes, np.uint16), list(CLASS_NAMES[: n_classes + 1]))
    labels.renumber()
    fresh = LabelSet(labels.masks, labels.classes, labels.class_names, labels.class_colors)
    return img, fresh


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation (a texture of grain size ~*sigma*)."""
    field = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _render(masks: np.ndarray, classes: np.ndarray, n_classes: int, n_channels: int, rng: np.random.Generator
            ) -> np.ndarray:
    """Fluorescence-like channels of labelled objects: textured objects on an uneven, noisy background.

    Each object has its own brightness, a grainy interior (chromatin-like texture and a few bright
    spots), a dimmer rim; the field is unevenly lit, blurred by the optics and carries shot and
    camera noise. Channel levels per class: see the module docstring.
    """
    shape = masks.shape
    h, w = shape
    brightness = {1: (1.0, 0.15), 2: (0.35, 0.9), 3: (0.8, 0.8)}
    per_obj = rng.uniform(0.6, 1.4, size=len(classes))
    inside = masks > 0
    edge = (ndimage.grey_erosion(masks, size=3) != ndimage.grey_dilation(masks, size=3)) & inside
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gy, gx = rng.uniform(-0.4, 0.4, size=2)
    illumination = 1 + gy * (yy - 0.5) + gx * (xx - 0.5) + 0.15 * _smooth_noise(rng, shape, max(h, w) / 6)
    img = np.zeros((h, w, n_channels), np.float32)
    for c in range(n_channels):
        level = np.zeros(len(classes), np.float32)
        for k in range(1, n_classes + 1):
            level[classes == k] = brightness[k][c] if c < 2 else 0.3
        level *= per_obj
        level[0] = 0
        texture = 1 + 0.25 * _smooth_noise(rng, shape, 1.2) + 0.1 * _smooth_noise(rng, shape, 4.0)
        spots = ndimage.gaussian_filter((rng.random(shape) < 0.004).astype(np.float32), 1.0) * 12
        chan = level[masks] * np.clip(texture + spots, 0.2, None)
        chan = np.where(edge, chan * 0.6, chan)
        background = 0.06 + 0.02 * _smooth_noise(rng, shape, 8.0)
        chan = ndimage.gaussian_filter((chan + background) * illumination, 1.0)
        photons = 200.0
        chan = rng.poisson(np.clip(chan, 0, None) * photons) / photons + rng.normal(0, 0.015, size=shape)
        img[..., c] = np.clip(chan, 0, None)
    return img


def _keep_largest_piece(masks: np.ndarray) -> np.ndarray:
    """Clip each object to its largest 4-connected piece (a later object can cut one in two)."""
    out = masks.copy()
    for obj, box in enumerate(ndimage.find_objects(masks), start=1):
        if box is None:
            continue
        pieces, n = ndimage.label(masks[box] == obj)
        if n > 1:
            largest = np.bincount(pieces.ravel())[1:].argmax() + 1
            out[box][(pieces > 0) & (pieces != largest)] = 0
    return out


def _to_dtype(img: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return img.astype(np.float32)
    top = np.iinfo(np.dtype(dtype)).max
    scale = 0.8 * top / max(float(img.max()), 1e-6)
    return np.clip(img * scale, 0, top).astype(dtype)


#: The demo project: enough labelled images for the default training to succeed (20, of which the default test
#: fraction holds out 4) and a few unlabelled ones to segment.
DEMO_IMAGES = 24
DEMO_LABELLED = 20


def write_demo_project(folder: str | Path, n_images: int = DEMO_IMAGES, n_labelled: int = DEMO_LABELLED,
                       shape: tuple[int, int] = (256, 256), n_classes: int = 2, seed: int = 0) -> Path:
    """Write a small project: ``n_images`` 2-channel TIFFs, the first ``n_labelled`` with ``_seg.npy`` labels.

    Returns the folder. Existing files of the same names are replaced; nothing else is touched.
    """
    import tifffile

    from .atomic import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        img, labels = make_sample(seed + i, shape=shape, n_classes=n_classes)
        path = folder / f"demo_{i + 1:02d}.tif"
        with atomic_write(path) as fh:
            tifffile.imwrite(fh, np.moveaxis(img, -1, 0), photometric="minisblack", metadata={"axes": "CYX"})
        if i < n_labelled:
            save_labels(folder / f"demo_{i + 1:02d}_seg.npy", labels, image_path=path)
    return folder
