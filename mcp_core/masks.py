"""Masks from the network's flows, and each final mask's cellpose flow error.

Cellpose's ``resize_and_compute_masks`` recomputes flows from the masks (``flow_error``) to drop
masks whose flows disagree with the network's, then fills holes and drops small masks; the
confidence scores need the flow error of those *final* masks. Both quality checks run
:func:`mcp_core.flow_qc.flow_error`, cellpose's computation with numpy on the CPU (many times
faster than cellpose's torch loop there, and not slowed by a busy machine): masks are exactly those
of ``resize_and_compute_masks``, errors those of :func:`mcp_core.confidence.flow_errors` of them.
"""

from __future__ import annotations

import fastremap
import numpy as np
import torch
from cellpose import dynamics, utils

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
    if flow_threshold and flow_threshold > 0 and masks.max() > 0:
        # cellpose's remove_bad_flow_masks, then compute_masks' narrowing to 16 bits that follows it
        fastremap.mask(masks, 1 + np.nonzero(flow_error(masks, dp, device) > flow_threshold)[0], in_place=True)
        fastremap.renumber(masks, in_place=True)
        if masks.dtype == np.uint32 and masks.max() < 2 ** 16:
            masks = masks.astype(np.uint16)
    masks = utils.fill_holes_and_remove_small_masks(masks, min_size=min_size)
    return masks, flow_errors(masks, dp, device)
