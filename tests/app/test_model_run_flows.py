"""Model runs in the Trainer: the model's flows kept in the _seg.npy (upstream cellpose's GUI layout), and the
channels picked beside "Run model" sent with the run."""

from __future__ import annotations

import numpy as np

from mcp_core.params import SegmentResult
from waiting import apoll

from .test_wiring import fake_model, open_with_model  # noqa: F401 (fake_model is a fixture)


async def test_trainer_model_run_writes_flows_and_thresholds(app_user, demo, fake_model, monkeypatch):  # noqa: F811
    seen: list = []

    async def segment(backend, images, params):
        seen.append(params)
        masks = np.zeros(images[0].shape[:2], np.uint16)
        masks[10:20, 10:20] = 1
        flows = np.zeros((2, *masks.shape), np.float32)
        flows[1][masks == 1] = 2.0
        return [SegmentResult(masks, np.array([0, 1], np.uint16), ["unassigned", "round"], flows=flows,
                              cellprob=np.where(masks > 0, 3.0, -3.0).astype(np.float32))]

    path = await open_with_model(app_user, demo, monkeypatch, "/trainer", segment)
    app_user.find(marker="run-model").click()
    await app_user.should_see("1 objects found by fake")
    await apoll(lambda: path.exists() and np.load(path, allow_pickle=True).item()["flows"] != [],
                "the model's flows saved")
    [params] = seen
    assert params.return_flows
    dat = np.load(path, allow_pickle=True).item()
    assert len(dat["flows"]) == 5 and dat["flows"][4].shape == (3, 96, 96)
    assert dat["flows"][4][1, 15, 15] == 2.0 and dat["flows"][4][2, 15, 15] == 3.0
    assert (dat["flow_threshold"], dat["cellprob_threshold"]) == (params.flow_threshold, params.cellprob_threshold)


async def test_trainer_model_run_uses_the_channels_picked(app_user, demo, fake_model, monkeypatch):  # noqa: F811
    from nicegui import ui

    seen: list = []

    async def segment(backend, images, params):
        seen.append(params)
        return [SegmentResult(np.zeros(images[0].shape[:2], np.uint16), np.zeros(1, np.uint16), ["unassigned"])]

    await open_with_model(app_user, demo, monkeypatch, "/trainer", segment)
    [picker] = [s for s in app_user.find(ui.select).elements if s.props.get("label") == "Channels"]
    assert picker.options == {0: "channel 0", 1: "channel 1"}  # the open demo image's two channels
    app_user.find(marker="run-model").click()
    await app_user.should_see("0 objects found")
    picker.value = [1]
    app_user.find(marker="run-model").click()
    await apoll(lambda: len(seen) == 2, "the second model run")
    assert [p.channels for p in seen] == [None, [1]]  # none picked: the model's own; then channel 1
