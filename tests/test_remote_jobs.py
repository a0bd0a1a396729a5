"""The server's job queue: one job at a time, cancel while queued, jobs and events survive a restart
(as interrupted), and a client re-attaches to a job's events."""

from __future__ import annotations

import json
import os

import pytest

from mcp_core.params import TrainParams
from mcp_core.synthetic import write_demo_project
from mcp_remote.client import RemoteBackend
from mcp_remote.config import RemoteConfig
from mcp_remote.server import start_server
from waiting import patience, poll

LONG = TrainParams(base_model="tiny", bsize=128, batch_size=2, epochs=100000, train_debug_steps=1, test_ratio=0.0,
                   rescale=False, class_names=["unassigned", "round", "elongated"], model_name="long",
                   min_train_masks=0)




def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"


def test_jobs_queue_one_at_a_time_and_come_back_interrupted_after_a_restart(tmp_path):
    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    project = write_demo_project(tmp_path / "project", n_images=2, n_labelled=2, shape=(128, 128))
    server = start_server(cfg, bind="127.0.0.1:0")
    token = server.site.tokens.mint("alice", via="test")[0]
    pid = None
    try:
        backend = RemoteBackend(server.address, token)
        first = backend.submit_training(project, LONG)
        second = backend.submit_training(project, LONG)
        third = backend.submit_training(project, LONG)
        poll(lambda: any(e.kind == "loss" for e in backend.events(first.job_id)), "the first job's first loss")
        assert [backend.job(j.job_id).state for j in (second, third)] == ["queued", "queued"]  # one GPU queue
        assert backend.events(second.job_id) == []
        cancelled = backend.cancel(third.job_id)
        assert cancelled.state == "cancelled"
        assert [(e.seq, e.kind, e.data["state"]) for e in backend.events(third.job_id)] == [(1, "state", "cancelled")]
        record = json.loads((tmp_path / "storage" / "jobs" / first.job_id / "record.json").read_text())
        local_dir = tmp_path / "storage" / "users" / "alice" / "home" / "jobs" / record["local_id"]
        pid = json.loads((local_dir / "process.json").read_text())["pid"]
        seen = backend.events(first.job_id)
        backend.close()
    finally:
        server.stop()

    server = start_server(cfg, bind="127.0.0.1:0")  # a restart: same storage, new address
    try:
        backend = RemoteBackend(server.address, token)  # tokens persist too
        poll(lambda: not _alive(pid), f"the orphaned worker {pid} to be stopped")
        states = {j.job_id: j.state for j in backend.jobs()}
        assert states == {first.job_id: "interrupted", second.job_id: "interrupted", third.job_id: "cancelled"}
        events = backend.events(first.job_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[:len(seen)] == seen and events[-1].data["state"] == "interrupted"
        assert "restart" in backend.job(first.job_id).error
        assert [(e.seq, e.data["state"]) for e in backend.events(second.job_id)] == [(1, "interrupted")]
        # Re-attaching from the last event seen streams the rest, then ends with the job.
        assert [e.seq for e in backend.watch(first.job_id, since=len(seen))] == [e.seq for e in events[len(seen):]]
        backend.close()
    finally:
        server.stop()


def test_submitting_with_a_server_path_is_refused(tmp_path):
    from mcp_remote.errors import InvalidRequest

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    project = write_demo_project(tmp_path / "project", n_images=1, n_labelled=1, shape=(64, 64))
    server = start_server(cfg, bind="127.0.0.1:0")
    try:
        backend = RemoteBackend(server.address, server.site.tokens.mint("alice", via="test")[0])
        with pytest.raises(InvalidRequest, match="test_dir"):
            backend.submit_training(project, TrainParams(base_model="tiny", test_dir="/etc"))
        assert backend.jobs() == []
        backend.close()
    finally:
        server.stop()


def test_a_server_configured_for_submitit_runs_training_through_it(tmp_path):
    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"), train_executor="local")
    project = write_demo_project(tmp_path / "project", n_images=2, n_labelled=2, shape=(128, 128))
    server = start_server(cfg, bind="127.0.0.1:0")
    token = server.site.tokens.mint("alice", via="test")[0]
    try:
        backend = RemoteBackend(server.address, token)
        short = TrainParams(base_model="tiny", bsize=128, batch_size=2, epochs=2, train_debug_steps=1, test_ratio=0.0,
                            min_train_masks=0, model_name="via_submitit")
        job = backend.submit_training(project, short)
        final = backend.wait(job.job_id, timeout=patience(300))
        assert final.state == "done", final.error
        assert [e.kind for e in backend.events(job.job_id)].count("loss") == 2
        record = json.loads((tmp_path / "storage" / "jobs" / job.job_id / "record.json").read_text())
        local_dir = tmp_path / "storage" / "users" / "alice" / "home" / "jobs" / record["local_id"]
        executor = json.loads((local_dir / "executor.json").read_text())  # submitted, not a subprocess of the server
        assert executor["cluster"] == "local" and executor["job_id"]
        assert "via_submitit" in {m.name for m in backend.list_models()}
        backend.close()
    finally:
        server.stop()
