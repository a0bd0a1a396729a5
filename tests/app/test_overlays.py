"""Plugin overlays in the Analyzer: layers converted for the canvas, drawn after "This image", toggled per plugin."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from mcp_app.canvas import LabelCanvas
from mcp_app.overlays import LABEL_ALPHA, LABEL_COLORS, canvas_layers, label_png
from mcp_core.measure import Overlay
from waiting import apoll

from .conftest import measure_folder_labels


def test_label_layer_is_a_translucent_png():
    url = label_png(np.array([[0, 1], [2, 9]]))
    assert url.startswith("data:image/png;base64,")
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert rgba.shape == (2, 2, 4) and rgba[0, 0, 3] == 0
    assert rgba[0, 1].tolist() == [*LABEL_COLORS[1].tolist(), LABEL_ALPHA]
    assert rgba[1, 1, :3].tolist() == LABEL_COLORS[9 % len(LABEL_COLORS)].tolist()  # colours repeat by id


def test_canvas_layers_keep_coordinates():
    layers = [Overlay.points("dots", [[1.234, 2.0]], [3]), Overlay.lines("paths", [[[0, 0], [1, 1]]], [1]),
              Overlay.outlines("rings", np.array([[0, 1, 1], [0, 1, 1]]))]
    out = canvas_layers(layers, "#ffd000")
    assert out[0] == {"kind": "points", "color": "#ffd000", "data": [[1.23, 2.0]]}
    assert out[1]["data"] == [[[0.0, 0.0], [1.0, 1.0]]]
    assert out[2]["kind"] == "outlines"
    assert {tuple(v) for v in out[2]["data"][0]} == {(1.0, 0.0), (3.0, 0.0), (3.0, 2.0), (1.0, 2.0)}


async def test_this_image_draws_plugin_overlays_and_toggles_them(app_user, demo):
    from nicegui import ui

    sent: list[str] = []

    def layers_call(match: re.Match) -> int:
        sent.append(match.group(0))
        return 1

    app_user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["']setPluginLayers["'].*""")] = layers_call
    await app_user.open("/analyzer")
    await app_user.should_see("demo_01.tif (1/3)")  # the image is open: the polygon has somewhere to go
    app_user.find(LabelCanvas).trigger("polygon", {"points": [[10, 10], [40, 10], [40, 40], [10, 40]], "class_id": 1})
    boxes = {e.text: e for e in app_user.find(ui.checkbox).elements}
    boxes["Perimeter intensity"].value = True
    app_user.find(marker="measure-image").click()
    await app_user.should_see("Overlays:")
    await apoll(lambda: sent, "the overlay layers sent to the canvas")
    assert "data:image/png;base64," in sent[-1] and '"labels"' in sent[-1]  # the perimeter band as a label layer
    count = len(sent)
    app_user.find(marker="overlay-perimeter_intensity").elements.pop().value = False
    await apoll(lambda: len(sent) > count, "the redraw without the layer")
    assert "data:image/png" not in sent[-1]


async def test_extra_tables_are_offered_for_download(app_user, demo):
    import pandas as pd

    from mcp_core.filenames import label_path
    from mcp_core.labels import load_labels

    await measure_folder_labels(app_user, ["Object clusters"], "clusters (CSV)")
    app_user.find(marker="table-clusters").click()
    response = await app_user.download.next(timeout=5)
    table = pd.read_csv(io.BytesIO(response.content))
    assert list(table.columns[:4]) == ["image", "frame", "cluster_id", "n_objects"]
    # the demo's labelled image has one cluster: two elongated objects sharing at least 5 pixel edges
    assert table[["image", "n_objects", "class_mix"]].values.tolist() == [["demo_01.tif", 2, "elongated:2"]]
    truth = load_labels(label_path(demo / "demo_01.tif"))
    members = [int(i) for i in str(table["member_ids"][0]).split(";")]
    assert [truth.class_names[truth.classes[i]] for i in members] == ["elongated", "elongated"]


async def test_folder_run_keeps_trails_for_each_frame(app_user, demo):
    sent: list[str] = []
    app_user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["']setPluginLayers["'].*""")] = (
        lambda m: sent.append(m.group(0)) or 1)
    # the three images form three one-frame series
    await measure_folder_labels(app_user, ["Object tracking"], "Overlays:")
    await apoll(lambda: sent, "the trails sent to the canvas")
    assert '"lines"' in sent[-1]  # one trail (a single point) per object of demo_01
    app_user.find(marker="next").click()  # demo_02 has no labels: no layers, the toggles go
    await app_user.should_see("demo_02.tif (2/3)")
    await app_user.should_not_see("Overlays:")
    app_user.find(marker="prev").click()  # back: demo_01's trails again
    await app_user.should_see("Overlays:")
    await apoll(lambda: '"lines"' in sent[-1] and len(sent) >= 3, "the trails of demo_01 again")
    app_user.find(marker="overlay-tracking").elements.pop().value = False
    await apoll(lambda: '"lines"' not in sent[-1], "the redraw without trails")


async def test_association_on_this_image_with_the_labels_as_children(app_user, demo):
    import pandas as pd
    from nicegui import ui

    from mcp_core.filenames import label_path
    from mcp_core.labels import load_labels
    from mcp_plugins.association import associate

    app_user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["']setPluginLayers["'].*""")] = lambda m: 1
    await app_user.open("/analyzer")
    await app_user.should_see("demo_01.tif (1/3)")  # the image is open: the polygon has somewhere to go
    app_user.find(LabelCanvas).trigger("polygon", {"points": [[0, 0], [95, 0], [95, 47], [0, 47]], "class_id": 1})
    pred = label_path(demo / "demo_01.tif", kind="pred")
    await apoll(pred.exists, "the prediction file")
    boxes = {e.text: e for e in app_user.find(ui.checkbox).elements}
    boxes["Object association (parents and children)"].value = True
    app_user.find(marker="measure-image").click()  # children: the labels (_seg.npy), the default second source
    await app_user.should_see("children (CSV)", retries=50)  # the run is done: its children table is offered
    app_user.find(marker="download-csv").click()
    table = pd.read_csv(io.BytesIO((await app_user.download.next(timeout=5)).content))
    truth = associate(load_labels(pred).masks, load_labels(label_path(demo / "demo_01.tif")).masks, 0.5)
    assert table["n_children"].tolist() == [int((truth["parent_id"] == 1).sum())]
    assert table["n_children"][0] > 0
