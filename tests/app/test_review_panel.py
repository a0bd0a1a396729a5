"""The Analyzer's review mode: least sure object first, accept remembered in the prediction file, delete."""

from __future__ import annotations

import re

import numpy as np

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels, save_labels
from waiting import apoll


async def test_review_walks_objects_least_sure_first(app_user, demo):
    labels = load_labels(label_path(demo / "demo_01.tif"))
    ids = labels.ids
    assert len(ids) >= 3
    confidence = np.full(labels.max_id + 1, np.nan, np.float32)
    confidence[ids] = np.linspace(0.9, 0.5, len(ids))  # the last object is the least sure
    confidence[ids[-2]] = 0.1  # ... except this one
    labels.confidence = {"confidence": confidence}
    pred = label_path(demo / "demo_01.tif", kind="pred")
    save_labels(pred, labels)
    first, second = int(ids[-2]), int(ids[-1])

    await app_user.open("/analyzer")
    await app_user.should_see("demo_01.tif (1/3)")
    await app_user.should_see(f"Object {first}: confidence 0.100 · {len(ids) - 1} more after it")
    app_user.find(marker="review-accept").click()
    await apoll(lambda: load_labels(pred).confidence.get("reviewed", np.zeros(1))[first:first + 1].tolist() == [1.0],
                "the accepted object remembered in the prediction file")
    await app_user.should_see(f"Object {second}: confidence 0.500")
    app_user.find(marker="review-delete").click()
    await apoll(lambda: second not in load_labels(pred).ids, "the deleted object gone from the file")
    saved = load_labels(pred)
    assert first in saved.ids and saved.confidence["reviewed"][first] == 1.0
    drawn = []
    app_user.javascript_rules[re.compile(r"(?s).*runMethod\(.*setPluginLayers.*")] = lambda m: drawn.append(m.group(0))
    app_user.find(marker="review-colour").elements.pop().set_value(True)
    await apoll(lambda: drawn and "#ff4d4d" in drawn[-1], "the confidence outlines sent to the canvas")


def test_confidence_layers_colour_objects_by_band():
    from mcp_app.review_panel import confidence_layers
    from mcp_core.labels import LabelSet

    masks = np.zeros((20, 20), np.uint16)
    masks[1:5, 1:5], masks[8:12, 8:12], masks[14:18, 1:5] = 1, 2, 3
    labels = LabelSet(masks, confidence={"confidence": np.array([np.nan, 0.2, 0.95, np.nan], np.float32)})
    layers = confidence_layers(labels)
    assert [layer["color"] for layer in layers] == ["#ff4d4d", "#39d353"]  # object 3 has no score: not drawn
    assert all(layer["kind"] == "outlines" and len(layer["data"]) == 1 for layer in layers)
