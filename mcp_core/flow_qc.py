"""Cellpose's flow-error quality check of 2D masks, computed on the CPU with numpy.

Cellpose (``dynamics.flow_error``) recomputes flows from masks by diffusing heat from each mask's
centre (``masks_to_flows_gpu``) and compares them with the network's flows. On the CPU its torch
loop costs several small parallel operations per diffusion step (hundreds of steps), each of
which waits for every torch thread: slow, and much slower on a busy machine. Here the same
diffusion runs over the mask pixels only, single-threaded, with the same arithmetic: a pixel's new
heat is the sum of its own and its same-mask neighbours' heat, added in cellpose's neighbour order
starting from its own, divided by 9, after each centre gained 1; gradients read the four direct
neighbours whatever mask they belong to; the same normalisation and the same per-mask means follow.

Torch adds up most pixels' neighbours in that order too, but a few pixels (those that fall at the
end of a block of its vectorised sum, which depends on the CPU's vector width and the number of
torch threads) in a different grouping: there cellpose's own flows differ from run to run of
thread settings in the last bits, and those of this module agree with cellpose's up to such bits.
"""

from __future__ import annotations

import numpy as np
import torch
from cellpose import dynamics
from scipy.ndimage import find_objects

#: A pixel's neighbours as cellpose's ``masks_to_flows_gpu`` lists them (itself first).
NEIGHBOURS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
#: The (below, above, right, left) neighbours whose heat gives the flow (dy, dx).
GRADIENT = ((1, 0), (-1, 0), (0, 1), (0, -1))
#: Padded images with more pixels than this diffuse in float32 in cellpose (float64 below).
FLOAT32_ABOVE = 4e7


def masks_to_flows(masks: np.ndarray, niter: int | None = None) -> tuple[np.ndarray, list | None]:
    """Flows of 2D *masks* by cellpose's diffusion: ``dynamics.masks_to_flows_gpu(masks, cpu, niter)``.

    Parameters
    ----------
    masks
        ``(Y, X)`` integer masks with ids ``1..n`` (each id present).
    niter
        Diffusion steps; default twice the largest ``height + width + 2`` of a mask, as cellpose.

    Returns
    -------
    tuple
        ``(2, Y, X)`` float64 unit flows (zero outside masks) and ``find_objects`` slices per id
        (``None`` without masks).
    """
    if not masks.max() > 0:
        return np.zeros((2, *masks.shape)), None
    labels = np.pad(masks, 1)
    y, x = np.nonzero(labels)
    index = np.full(labels.shape, len(y), np.intp)  # len(y): the slot that holds heat 0
    index[y, x] = np.arange(len(y))
    slices = find_objects(masks)
    centers, ext = dynamics.get_centers(masks, slices)
    steps = int(2 * ext.max()) if niter is None else int(niter)
    dtype = np.float32 if labels.size > FLOAT32_ABOVE else np.float64
    own = labels[y, x]
    same = [np.where(labels[y + dy, x + dx] == own, index[y + dy, x + dx], len(y)) for dy, dx in NEIGHBOURS[1:]]
    heat = _diffuse(same, index[centers[:, 0] + 1, centers[:, 1] + 1], steps, dtype)
    down, up, right, left = (heat[index[y + dy, x + dx]] for dy, dx in GRADIENT)
    mu = np.stack((down - up, right - left)).astype(np.float64)
    mu /= 1e-60 + (mu ** 2).sum(axis=0) ** 0.5
    flows = np.zeros((2, *masks.shape))
    flows[:, y - 1, x - 1] = mu
    return flows, slices


def _diffuse(same: list[np.ndarray], centers: np.ndarray, steps: int, dtype: type) -> np.ndarray:
    """Heat of each mask pixel after *steps* of cellpose's ``_extend_centers_gpu``, plus a last 0.

    *same* lists, per neighbour of :data:`NEIGHBOURS` after the pixel itself, the index of that
    neighbour's pixel when it is in the same mask, else of the last slot (heat 0).
    """
    n = len(same[0])
    heat = np.zeros(n + 1, dtype)
    total, term = np.empty(n, dtype), np.empty(n, dtype)
    for _ in range(steps):
        heat[centers] += 1
        total[:] = heat[:n]
        for neighbour in same:
            np.take(heat, neighbour, out=term)
            total += term
        np.divide(total, 9, out=heat[:n])
    return heat


def flow_error(masks: np.ndarray, flows: np.ndarray, device: torch.device | None = None,
               niter: int | None = None) -> np.ndarray:
    """Cellpose's ``dynamics.flow_error(masks, flows, device)[0]``: per mask id ``1..n``, the mean squared error.

    Parameters
    ----------
    masks
        ``(Y, X)`` masks with ids ``1..n`` (each id present, at least one).
    flows
        ``(2, Y, X)`` flows as the network outputs them.
    device
        A non-CPU device runs cellpose's ``masks_to_flows_gpu`` there; the CPU (default) runs :func:`masks_to_flows`.
    niter
        Diffusion steps (default cellpose's, from the largest mask).
    """
    if device is not None and device.type != "cpu":
        recomputed, slices = dynamics.masks_to_flows_gpu(masks, device=device, niter=niter)
    else:
        recomputed, slices = masks_to_flows(masks, niter)
    err = ((recomputed - flows / 5.) ** 2).sum(axis=0)
    return np.array([err[s][masks[s] == j + 1].mean() for j, s in enumerate(slices)])
