"""Jobs through LocalBackend: real worker subprocesses, numbered events, re-attach, cancel, crashes."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from mcp_core.backend import LocalBackend
from mcp_core.catalog import sidecar_path
from mcp_core.errors import JobError, ModelError
from mcp_core.jobs import JobStore, read_events
from mcp_core.model import MultiClassModel, build_model
from mcp_core.params import SegmentParams, TrainParams
from mcp_core.synthetic import make_sample, write_demo_project
from waiting import patience, poll

TINY = {"base_model": "tiny", "bsize": 128, "batch_size": 4, "learning_rate": 3e-3, "weight_decay": 0.01,
        "rescale": False, "class_names": ["unassigned", "round", "elongated"]}
WAIT_S = patience(300)  # a job's whole run, on a loaded 2-core machine


def _wait_for(backend, job_id, kind):
    return poll(lambda: (events := backend.events(job_id)) and any(e.kind == kind for e in events) and events,
                f"a {kind!r} event from {job_id}", last=lambda: [e.kind for e in backend.events(job_id)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LocalBackend whose training job ran to the end, with the job's events."""
    root = tmp_path_factory.mktemp("jobs")
    folder = write_demo_project(root / "project", n_images=4, n_labelled=4, shape=(128, 128))
    backend = LocalBackend(root / "home")
    info = backend.submit_training(folder, TrainParams(**TINY, epochs=3, test_ratio=0.25, model_name="my model"))
    assert info.state == "queued" and info.kind == "train"
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "done", (final.error, (root / "home" / "jobs" / info.job_id / "stderr.log").read_text()[-2000:])
    return backend, folder, info.job_id, backend.events(info.job_id)


def test_training_job_speaks_numbered_events_and_registers_its_model(trained):
    backend, _, job_id, events = trained
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[0] == "state" and events[0].data["state"] == "running"
    assert {"log", "progress", "loss", "artifact"} <= set(kinds) and kinds[-1] == "done"
    assert kinds.count("loss") == 3 and all(e.job_id == job_id for e in events)
    epochs = [e.data for e in events if e.kind == "progress" and e.data.get("stage") == "training"]
    assert [d["epoch"] for d in epochs] == [1, 2, 3] and all("eta" in d and "elapsed" in d for d in epochs)
    done = events[-1].data
    assert done["state"] == "done" and done["model"] == "my_model" and "ap50" in done["metrics"]
    # Re-attaching from the middle gives exactly the rest.
    assert [e.seq for e in backend.events(job_id, since=3)] == [e.seq for e in events[3:]]
    # A fresh backend on the same home (the app restarted) sees the finished job and its events.
    again = LocalBackend(backend.home)
    assert again.job(job_id).state == "done" and len(again.events(job_id)) == len(events)
    assert [j.job_id for j in again.jobs()] == [job_id]
    info = next(m for m in again.list_models() if m.name == "my_model")
    assert info.scope == "user" and info.class_names == TINY["class_names"] and info.available and info.architecture == "tiny"
    assert json.loads(sidecar_path(info.path).read_text())["state"] == "done"


def test_backend_segments_with_a_model_by_name(trained):
    backend = trained[0]
    img = make_sample(9, shape=(128, 128))[0]
    [res] = backend.segment([img], SegmentParams(model="my_model", bsize=128))
    assert res.masks.shape == (128, 128) and res.class_names == TINY["class_names"]
    with pytest.raises(ModelError, match="no model named 'nope'"):
        backend.segment([img], SegmentParams(model="nope"))


def test_batch_job_writes_predictions(trained):
    backend, folder, _, _ = trained
    paths = sorted(str(p) for p in folder.glob("demo_0[12].tif"))
    info = backend.submit_batch(paths, SegmentParams(model="my_model", bsize=128))
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "done", final.error
    assert sorted(os.path.basename(p) for p in final.result["written"]) == ["demo_01_pred.npy", "demo_02_pred.npy"]
    events = backend.events(info.job_id)
    assert [e.kind for e in events].count("artifact") == 2 and events[-1].kind == "done"
    with pytest.raises(JobError, match="missing file"):
        backend.submit_batch([str(folder / "nope.tif")], SegmentParams(model="my_model"))


def test_cancelled_training_job_keeps_a_loadable_checkpoint(trained, tmp_path):
    backend, folder, _, _ = trained
    info = backend.submit_training(folder, TrainParams(**TINY, epochs=100000, model_name="my model"))
    _wait_for(backend, info.job_id, "loss")
    backend.cancel(info.job_id)
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "cancelled"
    last = backend.events(info.job_id)[-1]
    assert last.kind == "state" and last.data["state"] == "cancelled"
    path = final.result["model_path"]
    assert os.path.basename(path) == "my_model_2.pth"  # the first model's name was taken
    assert MultiClassModel.load(path, device="cpu").class_names == TINY["class_names"]
    assert json.loads(sidecar_path(path).read_text())["state"] == "cancelled"
    assert backend.cancel(info.job_id).state == "cancelled"  # cancelling again changes nothing


def test_a_worker_that_dies_is_reported_failed(trained):
    backend, folder, _, _ = trained
    info = backend.submit_training(folder, TrainParams(**TINY, epochs=100000, model_name="doomed"))
    _wait_for(backend, info.job_id, "state")
    pid = json.loads((backend.jobs_dir / info.job_id / "process.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "failed" and "ended unexpectedly" in final.error
    events = read_events(backend.jobs_dir / info.job_id)
    assert events[-1].kind == "failed" and [e.seq for e in events] == list(range(1, len(events) + 1))


def test_bad_training_input_fails_with_the_reason(trained, tmp_path):
    backend = trained[0]
    (tmp_path / "empty").mkdir()
    info = backend.submit_training(tmp_path / "empty", TrainParams(**TINY, epochs=1))
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "failed" and "No training frames" in final.error
    assert backend.events(info.job_id)[-1].data["error"] == final.error
    with pytest.raises(JobError, match="does not exist"):
        backend.submit_training(tmp_path / "missing", TrainParams(**TINY))


def test_unknown_job_ids_are_refused(tmp_path):
    store = JobStore(tmp_path)
    for bad in ("nope", "../etc", ""):
        with pytest.raises(JobError):
            store.job(bad)


def test_add_model_copies_checked_files_into_the_catalog(tmp_path):
    backend = LocalBackend(tmp_path / "home")
    ours = build_model("tiny", TINY["class_names"], device="cpu").save(tmp_path / "lab" / "ours.pth")
    info = backend.add_model(ours)
    assert info.name == "ours" and info.class_names == TINY["class_names"] and info.scope == "user"
    assert backend.add_model(ours).name == "ours_2"  # never overwrites
    plain = tmp_path / "upstream_model"  # a cellpose file: no extension, no sidecar
    torch.save(build_model("tiny", device="cpu").net.state_dict(), plain)
    info = backend.add_model(plain)
    assert info.name == "upstream_model" and info.class_names == [] and info.architecture == "tiny"
    assert {m.name for m in backend.list_models()} >= {"cpsam", "cpsam_v2", "ours", "ours_2", "upstream_model"}
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a readable model file"):
        backend.add_model(tmp_path / "junk.pth")
    assert not (backend.models_dir / "junk.pth").exists()
