"""A project's job history: newest first, final state, model and metrics, kept in the project folder."""

from __future__ import annotations

import json
import time

from mcp_app.job_history import HISTORY_FILE, JobHistory


def test_jobs_are_kept_newest_first_with_their_end(tmp_path, monkeypatch):
    clock = iter([1000.0, 2000.0, 3000.0])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    history = JobHistory(tmp_path)
    history.start("a", "train", "Training first", model="first")  # started at 1000
    history.start("b", "batch", "Segmenting 3 file(s)", model="first")  # at 2000
    history.finish("a", "cancelled", "first", {"ap50": 0.25, "error_rate": 0.5})  # ended at 3000
    history.start("a", "train", "ignored: a is known")
    again = JobHistory(tmp_path)  # another page, or the app after a restart
    assert [r.job_id for r in again.records()] == ["b", "a"]
    a = again.records()[1]
    assert (a.kind, a.title, a.state, a.model, a.started, a.ended) == ("train", "Training first", "cancelled", "first",
                                                                       1000.0, 3000.0)
    assert a.metrics == {"ap50": 0.25, "error_rate": 0.5}
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(1000.0))
    assert a.summary() == f"cancelled · first · AP@0.5 0.250 · error rate 0.500 · {local}"
    assert again.ids() == {"a", "b"}
    assert [e["job_id"] for e in json.loads((tmp_path / HISTORY_FILE).read_text())] == ["b", "a"]


def test_unreadable_entries_and_files_are_left_out(tmp_path):
    (tmp_path / HISTORY_FILE).write_text(json.dumps([
        {"job_id": "ok", "kind": "train", "title": "t", "started": 5.0},
        {"job_id": 3, "kind": "train", "title": "t"},  # not an id
        "junk", {"unknown": 1}, {"job_id": "x", "kind": "train", "title": "t", "metrics": "none"},
    ]))
    assert [r.job_id for r in JobHistory(tmp_path).records()] == ["ok"]
    (tmp_path / HISTORY_FILE).write_text("{not json")
    assert JobHistory(tmp_path).records() == []
    JobHistory(tmp_path).finish("late", "done")  # a job whose start was never recorded
    [late] = JobHistory(tmp_path).records()
    assert (late.job_id, late.kind, late.title, late.state) == ("late", "", "late", "done") and late.ended is not None
