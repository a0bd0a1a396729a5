"""Flows and thresholds in label files: a model's predictions carry them in upstream cellpose's GUI layout,
promotion keeps them in the _seg.npy, and a _masks/_flows/_classes triplet is read with its flows."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mcp_core.errors import LabelFileError
from mcp_core.filenames import label_path
from mcp_core.labels import load_labels, load_labels_for
from mcp_core.labels.files import gui_flows
from mcp_core.labels.promote import promote_predictions
from mcp_core.params import SegmentParams, SegmentResult
from mcp_core.predictions import save_prediction


def _result() -> SegmentResult:
    """Two square objects; flows point right in the left one, left in the right one; none in the background."""
    masks = np.zeros((32, 48), np.uint16)
    masks[8:24, 4:20], masks[8:24, 28:44] = 1, 2
    dp = np.zeros((2, 32, 48), np.float32)
    dp[1][masks == 1], dp[1][masks == 2] = 3.0, -3.0
    cellprob = np.where(masks > 0, 4.0, -4.0).astype(np.float32)
    return SegmentResult(masks=masks, classes=np.zeros(3, np.uint16), class_names=["unassigned"],
                         flows=dp, cellprob=cellprob)


def test_a_prediction_carries_flows_in_the_upstream_gui_layout_and_its_thresholds(tmp_path):
    from cellpose import io as cpio
    from cellpose import plot

    result = _result()
    params = SegmentParams(flow_threshold=0.7, cellprob_threshold=-1.5, return_flows=True)
    path = save_prediction(result, tmp_path / "cells.tif", params=params)
    dat = np.load(path, allow_pickle=True).item()
    assert (dat["flow_threshold"], dat["cellprob_threshold"]) == (0.7, -1.5)
    # what upstream cellpose writes for the same flows (its eval returns [picture, dP, cellprob])
    cpio.masks_flows_to_seg([np.zeros((32, 48))], [result.masks],
                            [[plot.dx_to_circ(result.flows), result.flows, result.cellprob]], [str(tmp_path / "up.tif")])
    upstream = np.load(tmp_path / "up_seg.npy", allow_pickle=True).item()["flows"]
    ours = dat["flows"]
    assert len(ours) == len(upstream) == 5
    for mine, theirs in zip(ours, upstream, strict=True):
        assert np.shape(mine) == np.shape(theirs) and np.asarray(mine).dtype == np.asarray(theirs).dtype
    np.testing.assert_array_equal(ours[4], upstream[4])  # (dY, dX, cellprob) as floats
    assert np.abs(ours[1].astype(int) - upstream[1].astype(int)).max() <= 1  # probability as 0..255
    picture = ours[0][0]
    assert picture[16, 10].max() == 255 and picture[16, 36].max() == 255 and picture[2, 2].max() == 0
    assert not np.array_equal(picture[16, 10], picture[16, 36])  # opposite directions, different colours
    back = load_labels(path)
    np.testing.assert_array_equal(back.flows[4], ours[4])
    assert (back.flow_threshold, back.cellprob_threshold) == (0.7, -1.5)


def test_promotion_keeps_flows_and_thresholds_in_the_seg_file(tmp_path):
    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, np.zeros((32, 48), np.uint8))
    save_prediction(_result(), image, params=SegmentParams(flow_threshold=0.9, cellprob_threshold=1.0))
    promote_predictions([(image, "")])
    dat = np.load(label_path(image), allow_pickle=True).item()
    assert (dat["flow_threshold"], dat["cellprob_threshold"]) == (0.9, 1.0)
    assert dat["flows"][4].shape == (3, 32, 48) and dat["flows"][0].shape == (1, 32, 48, 3)


def test_masks_flows_classes_triplet_is_read_with_its_flows(tmp_path):
    import torch
    from cellpose import dynamics

    masks = _result().masks
    tifffile.imwrite(tmp_path / "a_masks.tif", masks)
    tifffile.imwrite(tmp_path / "a_classes.tif", np.where(masks == 2, 2, np.where(masks == 1, 1, 0)).astype(np.uint8))
    dynamics.labels_to_flows([masks], files=[str(tmp_path / "a.tif")], device=torch.device("cpu"))  # writes a_flows.tif
    written = tifffile.imread(tmp_path / "a_flows.tif")  # labels, cell probability, flow Y, flow X
    ls = load_labels_for(tmp_path / "a.tif")
    assert ls.classes.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(ls.flows[4], np.stack([written[2], written[3], written[1]]))
    # saved as a _seg.npy, the flows go along
    from mcp_core.labels import save_labels

    save_labels(tmp_path / "a_seg.npy", ls, image_path=tmp_path / "a.tif")
    assert np.load(tmp_path / "a_seg.npy", allow_pickle=True).item()["flows"][4].shape == (3, 32, 48)


def test_a_flows_file_of_the_wrong_size_is_refused_by_name(tmp_path):
    tifffile.imwrite(tmp_path / "a_masks.tif", _result().masks)
    tifffile.imwrite(tmp_path / "a_flows.tif", np.zeros((4, 16, 16), np.float32))
    with pytest.raises(LabelFileError, match="a_flows.tif must hold .* of 32x48, got shape"):
        load_labels_for(tmp_path / "a.tif")
    with pytest.raises(ValueError, match="Flows must be"):
        gui_flows(np.zeros((3, 4, 4)), np.zeros((4, 4)))
