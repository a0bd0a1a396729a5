"""Pixel sets around and inside labelled objects, for all objects at once.

Each function returns ``(owner, flat)``: the label that owns each selected pixel and the
pixel's flat index into the ``(Y, X)`` image, ready for :mod:`mcp_core.measure.grouped`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def foreground(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every object pixel: its label and flat index (row-major order)."""
    flat = np.flatnonzero(labels.ravel())
    return labels.ravel()[flat].astype(np.int64), flat


def annulus(labels: np.ndarray, gap: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Background pixels at distance ``gap < d <= gap + width`` from an object.

    ``d`` is the Euclidean distance from the pixel to the nearest object pixel; each pixel
    belongs to the object it is nearest to (rings of close neighbours split the space
    between them, as in a Voronoi diagram), and pixels of other objects are never included.
    One distance transform of the whole image, no loop over objects.
    """
    background = labels == 0
    if background.all() or not background.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iy, ix = ndimage.distance_transform_edt(background, return_distances=False, return_indices=True)
    h, w = labels.shape
    dy = iy - np.arange(h, dtype=iy.dtype)[:, None]
    dx = ix - np.arange(w, dtype=ix.dtype)[None, :]
    d2 = dy * dy  # squared distances are integers: compared with the squared radii, no square roots
    d2 += dx * dx
    flat = np.flatnonzero(((d2 > gap * gap) & (d2 <= (gap + width) ** 2)).ravel())
    owner = labels.ravel()[iy.ravel()[flat] * w + ix.ravel()[flat]].astype(np.int64)
    return owner, flat


def inner_band(labels: np.ndarray, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Object pixels within Euclidean distance *thickness* of the object's outside.

    The outside is every pixel not of the object: background, touching objects, and beyond
    the image edge. With ``thickness=1`` this is the 4-connected boundary. Works on each
    object's bounding box (``ndimage.find_objects``), never on the whole image per object.
    """
    w = labels.shape[1]
    owners, flats = [], []
    for obj, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        y0, x0 = box[0].start, box[1].start
        crop = np.pad(labels[box] == obj, 1)
        dist = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
        ry, rx = np.nonzero((dist > 0) & (dist <= thickness))
        owners.append(np.full(len(ry), obj, np.int64))
        flats.append((ry + y0) * w + (rx + x0))
    if not owners:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(owners), np.concatenate(flats)
