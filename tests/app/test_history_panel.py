"""The Trainer's history panel: versions of the open image, preview of what a restore changes, restore."""

from __future__ import annotations

import re

import numpy as np

from mcp_app.canvas import LabelCanvas
from mcp_app.history_panel import preview_layers
from mcp_core import history
from mcp_core.filenames import label_path
from mcp_core.labels import LabelSet, load_labels
from waiting import apoll


def test_preview_outlines_what_a_restore_would_change():
    now = np.zeros((20, 20), np.uint16)
    now[1:5, 1:5], now[10:15, 10:15] = 1, 2
    then = now.copy()
    then[10:15, 10:15] = 0  # object 2 did not exist yet
    then[15:19, 1:5] = 3  # object 3 was deleted since
    payload, sentence = preview_layers(LabelSet(now), LabelSet(then))
    assert sentence == "Restoring it brings back 1, removes 1."
    assert [layer["color"] for layer in payload] == ["#39d353", "#ff4d4d"] and payload[0]["kind"] == "outlines"
    assert preview_layers(LabelSet(now), LabelSet(now))[1] == "It is what the canvas shows."


async def test_versions_are_listed_and_restored(app_user, demo):
    drawn = []  # the layers sent to the canvas
    app_user.javascript_rules[re.compile(r"(?s).*runMethod\(.*setPluginLayers.*")] = lambda m: drawn.append(m.group(0))
    await app_user.open("/trainer")
    await app_user.should_see("demo_01.tif (1/3)")
    app_user.find(marker="next").click()
    await app_user.should_see("demo_02.tif (2/3)")
    seg = label_path(demo / "demo_02.tif")
    canvas = app_user.find(LabelCanvas)
    canvas.trigger("polygon", {"points": [[10, 10], [40, 10], [40, 40], [10, 40]], "class_id": 1})
    await apoll(lambda: len(history.versions(seg)) == 1, "the first version of demo_02_seg.npy")
    canvas.trigger("delete", {"ids": [1]})
    await apoll(lambda: len(history.versions(seg)) == 2, "the deletion as version 2")
    app_user.find(marker="history").elements.pop().open()  # what a click on its header does in the browser
    await app_user.should_see("deleted 1")
    app_user.find(marker="history-preview-1").click()
    await app_user.should_see("Version 1: Restoring it brings back 1.")
    assert "#39d353" in drawn[-1] and "outlines" in drawn[-1]
    app_user.find(marker="history-restore-1").click()
    await apoll(lambda: history.current_version(seg).action == "restored version 1: drew 1", "the restore's version")
    assert load_labels(seg).count == 1
    await app_user.should_see("Restored version 1")


def test_a_model_run_in_the_editor_is_named_in_the_history(demo):
    from mcp_app.editor import Editor
    from mcp_app.project import Project

    ed = Editor(Project.open(demo))
    item = Project.open(demo).items()[1]
    ed.open(item)
    masks = np.zeros(ed.labels.shape, np.uint16)
    masks[5:20, 5:20] = 1
    ed.action = "model run with tiny_v1"
    ed.replace(masks, np.array([0, 1]), ["unassigned", "round"], keep_existing=True)
    assert ed.dirty
    path = ed.save()
    assert history.current_version(path).action == "model run with tiny_v1: first version: 1 object(s)"
    assert ed.action is None  # later saves are plain edits again
