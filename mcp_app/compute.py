"""Running backend calls from the UI without blocking the event loop.

A local backend runs torch; calling it in a thread of the UI process stalls NiceGUI's event
loop (~170 ms measured), so local segmentation runs in NiceGUI's worker process pool instead.
Remote backends only wait on the network, so a thread is right for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nicegui import run

from mcp_core.backend import Backend
from mcp_core.params import SegmentParams, SegmentResult


def _segment_in_worker(backend: Backend, images: list[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
    return backend.segment(images, params)  # the worker process keeps the model loaded between calls


async def segment(backend: Backend, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
    """``backend.segment`` off the event loop (a worker process for a local backend).

    Raises
    ------
    ValueError
        When an image is all NaN/inf (it could only give an empty result).
    """
    if any(np.asarray(im).dtype.kind == "f" and not np.isfinite(im).any() for im in images):
        raise ValueError("The image is all NaN/inf: there is nothing to segment.")
    if backend.computes_here:
        return await run.cpu_bound(_segment_in_worker, backend, list(images), params)
    return await run.io_bound(backend.segment, list(images), params)


async def call(fn, *args, **kwargs):
    """Any other backend call (listing, jobs, events: quick or network-bound) in a thread."""
    return await run.io_bound(fn, *args, **kwargs)
