"""Pixel sets around and inside labelled objects, for all objects at once.

Each function returns ``(owner, flat)``: the label that owns each selected pixel and the
pixel's flat index into the ``(Y, X)`` image, ready for :mod:`mcp_core.measure.grouped`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# Widest ring (in pixels) built from shifted minimums, whose cost grows with the ring; wider ones take one
# whole-image feature transform, whose cost does not (the two cost the same at about 64 pixels on a 2048² frame).
_MAX_SHIFT_REACH = 48
# Pixels per strip of rows in those minimums (a few of their small-integer arrays fit the L2 cache).
_STRIP_PIXELS = 32768


def foreground(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every object pixel: its label and flat index (row-major order)."""
    flat = np.flatnonzero(labels.ravel())
    return labels.ravel()[flat].astype(np.int64), flat


def annulus(labels: np.ndarray, gap: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Background pixels at distance ``gap < d <= gap + width`` from an object.

    ``d`` is the Euclidean distance from the pixel to the nearest object pixel; each pixel
    belongs to the object it is nearest to (rings of close neighbours split the space
    between them, as in a Voronoi diagram), and pixels of other objects are never included.
    Of several nearest object pixels the one in the lowest column, then the lowest row, decides
    (the pixel ``ndimage.distance_transform_edt``'s feature transform returns). No loop over objects:
    rings reaching up to ``_MAX_SHIFT_REACH`` pixels take shifted minimums of small integer images
    (:func:`_nearest_by_shifts`), wider ones one whole-image feature transform.
    """
    if labels.all() or not labels.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    reach = math.floor(gap + width)  # no offset component of a ring pixel is longer
    # Squared distances are integers: comparing them with ⌊gap²⌋ and ⌊(gap + width)²⌋ is exact.
    inner, outer = math.floor(gap * gap), math.floor((gap + width) ** 2)
    if reach <= _MAX_SHIFT_REACH:
        flat, nearest_flat = _nearest_by_shifts(labels, inner, outer, reach)
    else:
        flat, nearest_flat = _nearest_by_feature_transform(labels, inner, outer)
    return labels.ravel()[nearest_flat].astype(np.int64), flat


def _nearest_by_feature_transform(labels: np.ndarray, inner: int, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the pixels with ``inner < d² <= outer`` and of their nearest object pixel."""
    iy, ix = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    h, w = labels.shape
    dy = iy - np.arange(h, dtype=iy.dtype)[:, None]
    dx = ix - np.arange(w, dtype=ix.dtype)[None, :]
    d2 = dy * dy
    d2 += dx * dx
    flat = np.flatnonzero(((d2 > inner) & (d2 <= outer)).ravel())
    return flat, iy.ravel()[flat] * w + ix.ravel()[flat]


def _nearest_by_shifts(labels: np.ndarray, inner: int, outer: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_nearest_by_feature_transform`, for ``outer < (reach + 1)²``, from two separable passes.

    The column pass gives each pixel the squared distance to the nearest object pixel of its
    column within *reach* (``(reach + 1)²`` if none); the row pass minimises, over the columns
    within *reach*, the key ``(column distance + dx²) · span + dx + reach``, which orders by
    distance, then column. Each pass is ``2·reach + 1`` shifted minimums of small-integer images,
    taken strip by strip of rows so that the strip stays in the processor's cache.
    """
    h, w = labels.shape
    span, none = 2 * reach + 1, (reach + 1) ** 2
    small = np.min_scalar_type(none + reach * reach)
    solid = np.full((h + 2 * reach, w), none, small)  # 0 at object pixels, padded by reach rows
    np.multiply(labels == 0, small.type(none), out=solid[reach:reach + h])
    key_type = np.min_scalar_type((none + reach * reach + 1) * span)
    key = np.full((h, w), np.iinfo(key_type).max, key_type)
    strip = max(1, _STRIP_PIXELS // w)
    column, shifted = np.empty((strip, w), small), np.empty((strip, w), small)
    wide = np.full((strip, w + 2 * reach), none * span, key_type)  # column distances · span, padded by reach columns
    key_shifted = np.empty((strip, w), key_type)
    for top in range(0, h, strip):
        rows = min(strip, h - top)
        np.copyto(column[:rows], solid[top + reach:top + reach + rows])
        for start in (s for dy in range(1, reach + 1) for s in (top + reach - dy, top + reach + dy)):
            np.add(solid[start:start + rows], small.type((start - top - reach) ** 2), out=shifted[:rows])
            np.minimum(column[:rows], shifted[:rows], out=column[:rows])
        np.multiply(column[:rows], key_type.type(span), out=wide[:rows, reach:reach + w])
        for dx in range(-reach, reach + 1):
            np.add(wide[:rows, reach + dx:reach + dx + w], key_type.type(dx * dx * span + dx + reach),
                   out=key_shifted[:rows])
            np.minimum(key[top:top + rows], key_shifted[:rows], out=key[top:top + rows])
    low = (inner + 1) * span
    np.subtract(key, key_type.type(low), out=key)  # wraps below low: one unsigned comparison selects the ring
    flat = np.flatnonzero(key.ravel() < (outer + 1) * span - low)
    # Each ring key's offsets to its nearest object pixel, above or below it when two are equally near.
    dx, d2 = np.arange(low, (outer + 1) * span) % span - reach, np.arange(low, (outer + 1) * span) // span
    dy = np.rint(np.sqrt(np.maximum(d2 - dx * dx, 0))).astype(np.int64)
    code = key.ravel()[flat]
    above = flat + (dx - dy * w)[code]
    is_above = solid.ravel()[above + reach * w] == 0
    return flat, np.where(is_above, above, flat + (dx + dy * w)[code])


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
