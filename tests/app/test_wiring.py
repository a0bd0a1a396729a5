"""Wiring after segmentation (simulated user): folder jobs, empty model runs, plot picks, classes, extra tables."""

from __future__ import annotations

import numpy as np
import pytest
from nicegui import ui

from mcp_app.canvas import LabelCanvas
from mcp_core.filenames import label_path
from mcp_core.labels import load_labels
from mcp_core.labels.files import save_labels
from mcp_core.params import JobEvent, JobInfo, ModelInfo, SegmentResult
from waiting import apoll

from .conftest import measure_folder_labels


@pytest.fixture
def fake_model(state, monkeypatch):
    """One usable model named "fake" in the pickers."""
    monkeypatch.setattr(state.backend, "list_models", lambda: [ModelInfo("fake", scope="user")])


async def test_folder_job_end_reloads_the_open_image(app_user, state, demo, fake_model, monkeypatch):
    pred = label_path(demo / "demo_01.tif", kind="pred")
    truth = load_labels(label_path(demo / "demo_01.tif"))
    written: list = []

    def submit_batch(paths, params):  # the job writes the prediction of the open image
        save_labels(pred, truth, image_path=demo / "demo_01.tif")
        written.append(pred)
        return JobInfo("job1", "batch", "running")

    def events(job_id, since=0):
        if not written:
            return []
        return [e for e in (JobEvent(1, job_id, "progress", {"fraction": 0.9, "message": "scoring…", "eta": 0}),
                            JobEvent(2, job_id, "done", {"state": "done", "written": [str(pred)]})) if e.seq > since]

    monkeypatch.setattr(state.backend, "submit_batch", submit_batch)
    monkeypatch.setattr(state.backend, "events", events)
    monkeypatch.setattr(state.backend, "fetch_predictions", lambda job_id, folder=None: list(written))
    await app_user.open("/analyzer")
    await app_user.should_see("demo_01.tif (1/3)")
    await app_user.should_see("fake (user)")
    app_user.find(marker="run-folder").click()
    await app_user.should_see("Segmentation finished: 1 prediction file(s) written.")
    [cancel] = app_user.find(marker="job-cancel").elements
    [eta] = app_user.find(marker="job-eta").elements
    assert not cancel.enabled and eta.text == ""
    app_user.find(LabelCanvas).trigger("polygon", {"points": [[2, 2], [12, 2], [12, 12]], "class_id": 1})
    await apoll(lambda: load_labels(pred).count == truth.count + 1, "the edit saved on top of the job's prediction")


MODEL_RUNS = pytest.mark.parametrize("page, run_marker", [("/trainer", "run-model"), ("/analyzer", "run-image")])


async def open_with_model(app_user, demo, monkeypatch, page, segment):
    """*page* open on demo_01 with model "fake" (answering with *segment*) in "Replace" mode; its label file."""
    from mcp_app import compute

    monkeypatch.setattr(compute, "segment", segment)
    await app_user.open(page)
    await app_user.should_see("demo_01.tif (1/3)")
    await app_user.should_see("fake (user)")
    for toggle in app_user.find(ui.toggle).elements:
        if "replace" in toggle.options:
            toggle.value = "replace"
    return label_path(demo / "demo_01.tif", kind="seg" if page == "/trainer" else "pred")


@MODEL_RUNS
async def test_model_run_finding_nothing_leaves_the_labels(app_user, demo, fake_model, monkeypatch, page, run_marker):
    async def segment(backend, images, params):
        return [SegmentResult(np.zeros(images[0].shape[:2], np.uint16), np.zeros(1, np.uint16), ["unassigned"])]

    path = await open_with_model(app_user, demo, monkeypatch, page, segment)
    before = load_labels(path).count if path.exists() else 0
    canvas = app_user.find(LabelCanvas)
    canvas.trigger("polygon", {"points": [[2, 2], [12, 2], [12, 12]], "class_id": 1})
    await apoll(lambda: path.exists() and load_labels(path).count == before + 1, "the first polygon saved")
    app_user.find(marker=run_marker).click()
    await app_user.should_see("0 objects found")
    canvas.trigger("polygon", {"points": [[60, 60], [80, 60], [80, 80]], "class_id": 1})
    await apoll(lambda: load_labels(path).count == before + 2, "both polygons kept on disk")


async def test_analyzer_class_picker_sets_the_class_of_new_masks(app_user, state, demo):
    await app_user.open("/analyzer")
    await app_user.should_see("demo_01.tif (1/3)")
    assert len(state.project.class_names) > 2
    [radio] = [r for r in app_user.find(ui.radio).elements if 2 in r.options]
    radio.value = 2
    app_user.find(LabelCanvas).trigger("polygon", {"points": [[2, 2], [30, 2], [30, 30]]})
    pred = label_path(demo / "demo_01.tif", kind="pred")
    await apoll(pred.exists, "the prediction file")
    assert load_labels(pred).classes.tolist() == [0, 2]


async def measured_folder(app_user) -> None:
    """Run "basic" and "Per-class summary" over the folder's labels."""
    await measure_folder_labels(app_user, ["Per-class summary"])


async def test_extra_tables_are_shown_and_written_to_the_project(app_user, demo):
    import pandas as pd

    await measured_folder(app_user)
    await app_user.should_see("saved as measurements/class_summary.csv")
    [view] = app_user.find(marker="table-view-class_summary").elements
    written = pd.read_csv(demo / "measurements" / "class_summary.csv")
    assert len(view.rows) == len(written) > 0 and "count" in written.columns


async def test_scatter_point_of_the_labels_in_the_analyzer_says_where_its_object_is(app_user, demo, monkeypatch):
    # the Analyzer's canvas shows predictions: the same mask id there is another object, so nothing is highlighted
    # (a point of a predictions table selects its object: tests/app/test_browser_wiring.py)
    picked: list[int] = []
    monkeypatch.setattr(LabelCanvas, "highlight", lambda self, mask_id: picked.append(mask_id))
    await measured_folder(app_user)
    scatter = [e for e in app_user.find(ui.echart).elements
               if e.options.get("series") and e.options["series"][0].get("type") == "scatter"][0]
    point = scatter.options["series"][0]["data"][0]
    app_user.find(ui.echart).trigger("componentClick", {
        "componentType": "series", "seriesType": "scatter", "seriesIndex": 0, "seriesName": "x", "name": "",
        "dataIndex": 0, "data": point, "value": point})
    await app_user.should_see("is in the labels (_seg.npy, shown in the Trainer), not in the predictions")
    assert picked == []


@MODEL_RUNS
async def test_model_run_records_its_thresholds_and_classes_by_name(app_user, state, demo, fake_model, monkeypatch,
                                                                 page, run_marker):
    seen: list = []

    async def segment(backend, images, params):
        seen.append(params)
        masks = np.zeros(images[0].shape[:2], np.uint16)
        masks[10:20, 10:20], masks[40:50, 40:50] = 1, 2
        # the model numbers its classes its own way: matched to the project's by name
        names = ["unassigned", state.project.class_names[2], state.project.class_names[1]]
        return [SegmentResult(masks, np.array([0, 1, 2], np.uint16), names,
                              confidence={"cellprob": np.array([0.0, 0.9, 0.4])})]

    path = await open_with_model(app_user, demo, monkeypatch, page, segment)
    app_user.find(marker=run_marker).click()
    await app_user.should_see("2 objects found by fake")
    await apoll(lambda: path.exists() and load_labels(path).count == 2, "the model's masks saved")
    saved = load_labels(path)
    [params] = seen
    assert (saved.flow_threshold, saved.cellprob_threshold) == (params.flow_threshold, params.cellprob_threshold)
    assert saved.classes.tolist() == [0, 2, 1]
    assert np.allclose(saved.confidence["cellprob"], [0.0, 0.9, 0.4])
