"""Page logic with NiceGUI's simulated user: navigation, edits through canvas events, autosave, classes."""

from __future__ import annotations

from mcp_app.canvas import LabelCanvas
from mcp_core.filenames import label_path
from mcp_core.labels import load_labels
from waiting import apoll

from .conftest import measure_folder_labels


async def test_home_shows_project_and_backend(app_user, demo):
    await app_user.open("/")
    await app_user.should_see("Trainer")
    await app_user.should_see("Analyzer")
    await app_user.should_see(str(demo.resolve()))
    await app_user.should_see("local")


async def test_trainer_contour_autosaves_and_undo(app_user, demo):
    await app_user.open("/trainer")
    await app_user.should_see("demo_01.tif (1/3)")
    app_user.find(marker="next").click()
    await app_user.should_see("demo_02.tif (2/3)")
    seg = label_path(demo / "demo_02.tif")
    assert not seg.exists()
    canvas = app_user.find(LabelCanvas)
    canvas.trigger("polygon", {"points": [[10, 10], [40, 10], [40, 40], [10, 40]], "class_id": 2})
    await apoll(seg.exists, "the autosave of demo_02_seg.npy")
    saved = load_labels(seg)
    assert saved.count == 1 and saved.classes.tolist() == [0, 2]
    canvas.trigger("assign", {"ids": [1], "class_id": 1})
    canvas.trigger("delete", {"ids": [1]})
    await apoll(lambda: load_labels(seg).count == 0, "the deletion on disk")
    app_user.find(marker="undo").click()
    app_user.find(marker="undo").click()
    await apoll(lambda: load_labels(seg).count == 1 and load_labels(seg).classes.tolist() == [0, 2],
                "the undone edits on disk")
    await app_user.should_see("Saved demo_02_seg.npy")


async def test_navigation_flushes_pending_edit(app_user, demo):
    await app_user.open("/trainer")
    await app_user.should_see("demo_01.tif (1/3)")
    before = load_labels(label_path(demo / "demo_01.tif")).count
    app_user.find(LabelCanvas).trigger("lasso", {"points": [[0, 0], [96, 0], [96, 96], [0, 96]]})
    app_user.find(marker="next").click()  # immediately: the save must happen before leaving
    await app_user.should_see("demo_02.tif (2/3)")
    assert before > 0 and load_labels(label_path(demo / "demo_01.tif")).count == 0


async def test_add_class_in_trainer(app_user, state):
    await app_user.open("/trainer")
    await app_user.should_see("Classes")
    app_user.find("New class").type("mitotic")
    app_user.find(marker="add-class").click()
    await apoll(lambda: "mitotic" in state.project.class_names, "the new class in the project")
    assert (state.folder / "multicellpose.json").exists()


async def test_analyzer_edits_predictions_not_labels(app_user, demo):
    await app_user.open("/analyzer")
    await app_user.should_see("Promote to labels")
    await app_user.should_see("demo_01.tif (1/3)")
    seg = label_path(demo / "demo_01.tif")
    seg_before = seg.read_bytes()
    app_user.find(LabelCanvas).trigger("polygon", {"points": [[5, 5], [20, 5], [20, 20]], "class_id": 1})
    pred = label_path(demo / "demo_01.tif", kind="pred")
    await apoll(pred.exists, "the prediction file")
    assert seg.read_bytes() == seg_before


async def test_measure_folder_table_and_csv(app_user, demo):
    import io

    import pandas as pd

    await measure_folder_labels(app_user)
    app_user.find(marker="download-csv").click()
    response = await app_user.download.next(timeout=5)
    table = pd.read_csv(io.BytesIO(response.content))
    truth = load_labels(label_path(demo / "demo_01.tif"))
    assert len(table) == truth.count
    assert {"image", "mask_id", "class_name", "area"} <= set(table.columns)
    assert sorted(table["area"]) == sorted(int((truth.masks == i).sum()) for i in truth.ids)


async def test_a_job_that_ended_while_no_page_followed_it_gets_its_end_in_the_history(app_user, state, demo,
                                                                                      monkeypatch):
    from mcp_app.job_history import JobHistory
    from mcp_core.params import JobInfo

    JobHistory(demo).start("j9", "train", "Training m9")  # the page that started it was closed
    monkeypatch.setattr(state.backend, "jobs", lambda: [
        JobInfo("j9", "train", "done", result={"model": "m9", "metrics": {"ap50": 0.5}})])
    await app_user.open("/trainer")
    await app_user.should_see("done · m9 · AP@0.5 0.500")
    [rec] = JobHistory(demo).records()
    assert (rec.state, rec.model, rec.metrics) == ("done", "m9", {"ap50": 0.5})


async def test_trainer_reattaches_to_a_running_training_job_of_its_project_only(app_user, state, demo, tmp_path):
    from mcp_app.job_history import JobHistory
    from mcp_core.params import TrainParams

    job = state.backend.submit_training(demo, TrainParams(model_name="long", base_model="tiny", epochs=500,
                                                          class_names=list(state.project.class_names)))
    try:
        JobHistory(tmp_path).start(job.job_id, "train", "Training long (another project)")
        await app_user.open("/trainer")
        await app_user.should_see("No jobs for this project yet.")
        await app_user.should_not_see("Training long")
        JobHistory(demo).start(job.job_id, "train", "Training long")  # as the Trainer of this project records it
        await app_user.open("/trainer")
        await app_user.should_see("Cancel")  # its live panel
        await app_user.should_see("Training long")
        await app_user.should_not_see("another project")
    finally:
        state.backend.cancel(job.job_id)
    final = await apoll(lambda: state.backend.job(job.job_id).state in ("cancelled", "done", "failed")
                        and state.backend.job(job.job_id).state, f"training job {job.job_id} to end")
    assert final == "cancelled"
