"""Masks from the network's flows, and each final mask's cellpose flow error.

Cellpose's ``resize_and_compute_masks`` recomputes flows from the masks (``flow_error``) to drop
masks whose flows disagree with the network's, then fills holes and drops small masks; the
confidence scores need the flow error of those *final* masks. The quality check runs
:func:`mcp_core.flow_qc.flow_error`, cellpose's computation with numpy on the CPU (many times
faster than cellpose's torch loop there, and not slowed by a busy machine), and its errors are
kept: the diffusion treats each mask on its own, with a step count of twice the largest mask extent
(height + width + 2) of the image, and a pixel's flow reads only its four neighbours, so a final
mask whose pixels and neighbouring pixels did not change gets the error it had before. Only masks
that dropping masks or filling holes touched are recomputed (with their neighbours), or all of them
when the step count changed. Masks are exactly those of ``resize_and_compute_masks``; errors those
of :func:`mcp_core.confidence.flow_errors` of them (on the CPU to the last bit: there a pixel's sums
do not depend on its place in the list of mask pixels).
"""

from __future__ import annotations

import fastremap
import numpy as np
import torch
from cellpose import dynamics, utils
from scipy import ndimage as ndi
from scipy.ndimage import find_objects

from .confidence import flow_errors
from .flow_qc import flow_error


def masks_and_flow_errors(dp: np.ndarray, cellprob: np.ndarray, niter: int, cellprob_threshold: float,
                          flow_threshold: float, min_size: int, max_size_fraction: float,
                          device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """``(masks, flow error per mask id)``, as ``resize_and_compute_masks`` and ``flow_errors`` give them.

    Parameters
    ----------
    dp
        ``(2, Y, X)`` float32 flows as the network outputs them.
    cellprob
        ``(Y, X)`` cell probability logits.
    niter, cellprob_threshold, flow_threshold, min_size, max_size_fraction, device
        Cellpose's dynamics settings (``resize_and_compute_masks``'s arguments).

    Returns
    -------
    tuple of ndarray
        ``(Y, X)`` masks (ids ``1..n``) and ``n + 1`` flow errors (``nan`` at 0).
    """
    masks = dynamics.compute_masks(dp, cellprob, niter=niter, cellprob_threshold=cellprob_threshold,
                                   flow_threshold=0, max_size_fraction=max_size_fraction, device=device)
    if not (flow_threshold and flow_threshold > 0 and masks.max() > 0):
        masks = utils.fill_holes_and_remove_small_masks(masks, min_size=min_size)
        return masks, flow_errors(masks, dp, device)
    # cellpose's remove_bad_flow_masks, keeping the errors, then compute_masks' narrowing to 16 bits
    judged = masks.copy()
    errors = flow_error(judged, dp, device)
    fastremap.mask(masks, 1 + np.nonzero(errors > flow_threshold)[0], in_place=True)
    fastremap.renumber(masks, in_place=True)
    if masks.dtype == np.uint32 and masks.max() < 2 ** 16:
        masks = masks.astype(np.uint16)
    masks = utils.fill_holes_and_remove_small_masks(masks, min_size=min_size)
    steps = _diffusion_steps(masks)
    if steps is None or steps != _diffusion_steps(judged):
        return masks, flow_errors(masks, dp, device)
    return masks, _reuse_errors(judged, errors, masks, dp, steps, device)


def _diffusion_steps(masks: np.ndarray) -> int | None:
    """The step count of cellpose's ``masks_to_flows_gpu`` for *masks* (ids ``1..n``); None without masks."""
    return 2 * max((s[0].stop - s[0].start + s[1].stop - s[1].start + 2 for s in find_objects(masks) if s is not None),
                   default=-1) if masks.any() else None


def _reuse_errors(judged: np.ndarray, errors: np.ndarray, masks: np.ndarray, dp: np.ndarray, steps: int,
                  device: torch.device) -> np.ndarray:
    """Flow errors of *masks*, taken from those of *judged* where they cannot differ, recomputed elsewhere.

    A pixel's recomputed flow depends on its mask (pixels, centre, step count) and on the diffusion
    values of its four neighbours, which belong to its mask, to background or to adjacent masks. So
    a mask keeps its error when it and every pixel next to it are the same in both label images.
    """
    n = int(masks.max()) + 1
    inside = (masks > 0) | (judged > 0)
    pairs, counts = np.unique(judged[inside].astype(np.int64) * n + masks[inside], return_counts=True)
    old, new = pairs // n, pairs % n
    same = (old > 0) & (new > 0) & (counts == np.bincount(masks.ravel(), minlength=n)[new]) \
        & (counts == np.bincount(judged.ravel(), minlength=len(errors) + 1)[old])
    before = np.full(n, -1)
    before[new[same]] = old[same]
    moved = inside & (before[masks] < 0)  # pixels outside the masks common to both
    cross = ndi.generate_binary_structure(2, 1)
    redo = np.zeros(n, bool)
    redo[masks[ndi.binary_dilation(moved, cross)]] = True
    redo[0] = False
    out = np.full(n, np.nan)
    out[~redo & (before > 0)] = errors[before[~redo & (before > 0)] - 1]
    if redo.any():
        # the flow errors of the masks to redo, with their neighbours (whose diffusion their flows read)
        near = redo.copy()
        near[masks[ndi.binary_dilation(redo[masks], cross)]] = True
        near[0] = False
        sub = (np.cumsum(near) * near).astype(masks.dtype)[masks]
        out[redo] = flow_error(sub, dp, device, niter=steps)[np.cumsum(near)[redo] - 1]
    return out
