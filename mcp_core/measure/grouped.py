"""Per-label reductions in one pass over the pixels (no loop over labels).

Every function takes ``groups`` (a non-negative integer label per pixel, 1-D) and ``values``
(one value per pixel) and returns one result per label ``0..n-1``; labels without pixels
give ``nan`` (or 0 for counts and sums).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EXACT_FLOAT = 2**53


def counts(groups: np.ndarray, n: int) -> np.ndarray:
    """Pixels per label."""
    return np.bincount(groups, minlength=n)[:n]


def sums(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of *values* per label."""
    return np.bincount(groups, weights=values, minlength=n)[:n]


def means(groups: np.ndarray, values: np.ndarray, n: int, count: np.ndarray | None = None) -> np.ndarray:
    """Mean of *values* per label (``nan`` for empty labels)."""
    count = counts(groups, n) if count is None else count
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, sums(groups, values, n) / np.maximum(count, 1), np.nan)


def sorted_within_groups(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """*values* sorted by label, then by value within each label (labels ascending); see :func:`_sorted_keys`."""
    keys, value_of = _sorted_keys(groups, values)
    return value_of(keys)


def _sorted_keys(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Sort keys of the pixels by label, then value, and the function giving the values of some of them.

    Values that are integers (8/16/32-bit images) or exact in ``float32`` are packed with
    their label into one 32- or 64-bit key and sorted with ``numpy.sort`` (several times faster than
    an ``argsort``), and only the keys a caller picks are unpacked; other data take a ``lexsort``.
    """
    groups = np.asarray(groups, np.int64)
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return values.copy(), _same
    top = int(groups.max()) + 1
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo + 1
    if np.isfinite(span) and span * top < _EXACT_FLOAT and np.array_equal(values, np.floor(values)):
        kind = np.uint32 if span * top < 2**32 else np.int64  # e.g. 16-bit images, < 65536 labels: half the bytes
        key = np.sort(groups.astype(kind) * kind(span) + (values - lo).astype(kind))
        return key, lambda picked: (picked % kind(span)).astype(np.float64) + lo
    single = values.astype(np.float32)
    if top < 2**31 and np.array_equal(single, values, equal_nan=True):
        bits = single.view(np.uint32)
        ordered = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))  # unsigned order = float order
        return np.sort((groups.astype(np.uint64) << np.uint64(32)) | ordered.astype(np.uint64)), _unpack_float32
    return values[np.lexsort((values, groups))], _same


def _same(values: np.ndarray) -> np.ndarray:
    """Keys that are the values themselves."""
    return values


def _unpack_float32(keys: np.ndarray) -> np.ndarray:
    """The ``float32`` values (as ``float64``) packed into the low 32 bits of *keys*."""
    low = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    back = np.where(low >> 31, low & np.uint32(0x7FFFFFFF), ~low)
    return back.view(np.float32).astype(np.float64)


def percentiles(groups: np.ndarray, values: np.ndarray, q: float | np.ndarray, n: int,
                ranked: np.ndarray | None = None) -> np.ndarray:
    """The *q*-th percentile (0-100, linear interpolation as ``numpy.percentile``) of *values* per label.

    Parameters
    ----------
    groups, values
        Label and value per pixel.
    q
        One percentile, or one per label (length *n*).
    n
        Number of labels (results for ``0..n-1``).
    ranked
        :func:`sorted_within_groups` of the same pixels, to reuse across calls.
    """
    groups = np.asarray(groups, np.int64)
    count = counts(groups, n)
    out = np.full(n, np.nan)
    if groups.size == 0:
        return out
    keys, value_of = _sorted_keys(groups, values) if ranked is None else (ranked, _same)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    q = np.broadcast_to(np.asarray(q, np.float64), (n,))
    has = count > 0
    pos = starts[has] + q[has] / 100.0 * (count[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, starts[has] + count[has] - 1)
    frac = pos - lo
    low, high = value_of(keys[lo]), value_of(keys[hi])
    out[has] = low + (high - low) * frac
    return out


def medians(groups: np.ndarray, values: np.ndarray, n: int, ranked: np.ndarray | None = None) -> np.ndarray:
    """Median of *values* per label."""
    return percentiles(groups, values, 50.0, n, ranked)
