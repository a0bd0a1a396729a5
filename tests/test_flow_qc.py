"""mcp_core.flow_qc: cellpose's flow recomputation and flow error, with numpy, equal to cellpose's own."""

import numpy as np
import pytest
import torch
from cellpose import dynamics
from skimage.segmentation import relabel_sequential

from mcp_core import flow_qc
from mcp_core.synthetic import make_sample

CPU = torch.device("cpu")


def _random_masks(seed: int, shape=(96, 120)) -> np.ndarray:
    """Touching, ragged masks of many sizes (rectangles and thin lines), some at the image's edges, ids 1..n."""
    rng = np.random.default_rng(seed)
    masks = np.zeros(shape, np.int32)
    for i in range(1, 40):
        y, x = rng.integers(-5, shape[0]), rng.integers(-5, shape[1])
        h, w = rng.integers(1, 30), rng.integers(1, 30)
        masks[max(y, 0):y + h, max(x, 0):x + w] = i
    masks[rng.random(shape) < 0.05] = 0  # holes, and masks cut into pieces
    return relabel_sequential(masks)[0]


def _cases():
    yield "random", _random_masks(0)
    yield "random", _random_masks(1)
    yield "synthetic", relabel_sequential(make_sample(3, shape=(128, 128))[1].masks.astype(np.int32))[0]
    single = np.zeros((20, 20), np.uint16)
    single[5, 7] = 1
    yield "one pixel", single
    square = np.zeros((31, 31), np.uint16)
    square[5:26, 5:26] = 1  # symmetric about its centre pixel
    yield "square", square


@pytest.mark.parametrize("name, masks", list(_cases()))
def test_flows_are_cellposes(name, masks):
    ours, slices = flow_qc.masks_to_flows(masks)
    theirs, their_slices = dynamics.masks_to_flows_gpu(masks, device=CPU)
    assert ours.dtype == theirs.dtype and slices == their_slices
    # torch adds a few pixels' neighbours in another grouping (module docstring): equal up to the last bits
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_a_given_step_count_is_used():
    masks = _random_masks(2)
    np.testing.assert_allclose(flow_qc.masks_to_flows(masks, niter=7)[0],
                               dynamics.masks_to_flows_gpu(masks, device=CPU, niter=7)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flow_errors_are_cellposes(seed):
    masks = _random_masks(seed)
    rng = np.random.default_rng(seed)
    flows = 5 * dynamics.masks_to_flows_gpu(masks, device=CPU)[0] + rng.normal(0, 2, (2, *masks.shape))
    flows = flows.astype(np.float32)
    ours = flow_qc.flow_error(masks, flows)
    theirs = dynamics.flow_error(masks, flows, CPU)[0]
    assert ours.shape == (masks.max(),)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_no_masks_give_zero_flows():
    flows, slices = flow_qc.masks_to_flows(np.zeros((8, 9), np.uint16))
    assert slices is None and flows.shape == (2, 8, 9) and not flows.any()


def test_large_images_diffuse_in_float32_like_cellpose(monkeypatch):
    masks = _random_masks(3)
    monkeypatch.setattr(flow_qc, "FLOAT32_ABOVE", 0)
    ours = flow_qc.masks_to_flows(masks)[0]
    # cellpose picks float32 by the padded image's pixel count, torch.prod(shape): make it count as large
    monkeypatch.setattr(torch, "prod", lambda shape: torch.tensor(10 ** 9))
    theirs = dynamics.masks_to_flows_gpu(masks, device=CPU)[0]
    monkeypatch.undo()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
