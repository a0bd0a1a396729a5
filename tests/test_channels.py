"""The model's input channels: chosen when training, stored in the sidecar, used when segmenting unless
the segmentation names others."""

from __future__ import annotations

import json

import numpy as np

from mcp_core.model import build_model, open_model
from mcp_core.params import SegmentParams, TrainParams
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample, write_demo_project
from mcp_core.train import train

CLASSES = ["unassigned", "round", "elongated"]
LOOSE = {"bsize": 128, "flow_threshold": 0.0, "min_size": 0, "return_flows": True}


def test_training_stores_the_channels_in_the_sidecar(tmp_path):
    data = write_demo_project(tmp_path / "data", n_images=2, n_labelled=2, shape=(96, 96))
    result = train(data, TrainParams(base_model="tiny", model_name="ch1", channels=[1], epochs=1, train_debug_steps=1,
                                     batch_size=2, bsize=64, test_ratio=0.0, min_train_masks=0,
                                     save_path=str(tmp_path / "models"), device="cpu"))
    side = json.loads((tmp_path / "models" / "ch1.json").read_text())
    assert side["channels"] == [1] and side["training"]["channels"] == [1]
    assert open_model(result.model_path, device="cpu").meta["channels"] == [1]


def test_segmentation_uses_the_models_channels_unless_told_otherwise(tmp_path):
    model = build_model("tiny", CLASSES, device="cpu", seed=3, bsize=128)
    model.meta["channels"] = [1]
    path = model.save(tmp_path / "m.pth")
    model = open_model(path, device="cpu")
    image = make_sample(2, shape=(128, 128), n_channels=2)[0]
    image[..., 0] = np.random.default_rng(0).random(image.shape[:2]) * image.max()  # channel 0: noise only
    [own] = segment(model, [image], SegmentParams(**LOOSE))
    [one] = segment(model, [image], SegmentParams(channels=[1], **LOOSE))
    [zero] = segment(model, [image], SegmentParams(channels=[0], **LOOSE))
    np.testing.assert_array_equal(own.cellprob, one.cellprob)  # None: the sidecar's [1]
    assert not np.array_equal(own.cellprob, zero.cellprob)  # asked for channel 0: channel 0 it is


def test_channel_names_come_from_the_file_or_are_numbered(tmp_path):
    import tifffile

    from mcp_core.io import open_image

    tifffile.imwrite(tmp_path / "a.ome.tif", np.zeros((2, 16, 16), np.uint16),
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((16, 16, 3), np.uint8))
    with open_image(tmp_path / "a.ome.tif") as named, open_image(tmp_path / "b.tif") as plain:
        assert named.channel_names == ["DAPI", "GFP"]
        assert plain.channel_names == ["channel 0", "channel 1", "channel 2"]


def test_nd2_channel_names():
    from pathlib import Path

    from mcp_core.io import open_image

    with open_image(Path(__file__).parent / "fixtures" / "nd2" / "example-zstack.nd2") as src:
        assert src.channel_names == ["FITC BP"]  # NIS-Elements' name of its one channel
