"""mcp_core.masks: masks exactly as cellpose's dynamics give them, and the flow errors of those masks."""

import warnings

import numpy as np
import pytest
import torch
from cellpose import dynamics

from mcp_core.confidence import flow_errors
from mcp_core.masks import masks_and_flow_errors
from mcp_core.synthetic import make_sample

CPU = torch.device("cpu")


def _outputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Network-like flows and cell probabilities of a synthetic image, garbled in one corner."""
    labels = make_sample(seed, shape=(160, 160), n_objects=30)[1].masks.astype(np.int64)
    flows = (5 * dynamics.masks_to_flows_gpu(labels, device=CPU)[0]).astype(np.float32)
    rng = np.random.default_rng(seed)
    flows[:, :80, :80] += rng.normal(0, 3, (2, 80, 80)).astype(np.float32)
    cellprob = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    cellprob[:, :80][rng.random((160, 80)) < 0.02] *= -1  # holes and specks in the left half
    return flows, cellprob


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("flow_threshold", [0.4, 0.0])
def test_masks_are_cellposes_and_errors_those_of_the_final_masks(seed, flow_threshold):
    dp, cellprob = _outputs(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        masks, errors = masks_and_flow_errors(dp, cellprob, 200, 0.0, flow_threshold, 15, 0.4, CPU)
        expected = dynamics.resize_and_compute_masks(dp, cellprob, niter=200, cellprob_threshold=0.0,
                                                     flow_threshold=flow_threshold, min_size=15,
                                                     max_size_fraction=0.4, device=CPU)
    assert masks.dtype == expected.dtype
    np.testing.assert_array_equal(masks, expected)
    assert masks.max() > 5
    np.testing.assert_array_equal(errors, flow_errors(expected, dp, CPU))
    # cellpose's own flow_error, up to the last bits its torch sums give a few pixels (mcp_core.flow_qc)
    np.testing.assert_allclose(errors[1:], dynamics.flow_error(expected, dp, CPU)[0], rtol=1e-12, atol=1e-12)


def test_no_cells_give_no_masks_and_no_errors():
    masks, errors = masks_and_flow_errors(np.zeros((2, 64, 64), np.float32), np.full((64, 64), -5, np.float32),
                                          200, 0.0, 0.4, 15, 0.4, CPU)
    assert not masks.any()
    assert errors.shape == (1,) and np.isnan(errors[0])
