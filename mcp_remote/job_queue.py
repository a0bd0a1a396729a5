"""The server's one GPU queue: users' jobs run one at a time through their LocalBackend.

A remote job is a record ``<storage>/jobs/<job_id>/record.json`` (owner, kind, state,
parameters, the LocalBackend home and the local job id once started) plus
``events.jsonl`` for the events the server itself adds (cancelled while queued, interrupted).
A job's events are its LocalBackend job's events followed by those, numbered on without gaps.
After a restart every job that had not finished is marked ``interrupted`` (its worker, if it
still runs, is stopped), so no job runs without the server watching it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_core.backend import LocalBackend
from mcp_core.errors import MCPError
from mcp_core.jobs import FINAL_STATES, EventWriter, new_job_id, read_events, write_record
from mcp_core.params import JobEvent, JobInfo

from .errors import JobNotFound, QuotaExceeded, public_message

_PATH_KEYS = ("path", "image", "model_path", "dataset", "save_path", "folder", "base_model", "replay_dir")


def public(value: Any) -> Any:
    """*value* with server file paths cut to their file names, in texts too (what a client may see)."""
    if isinstance(value, dict):
        return {k: (os.path.basename(v) if k in _PATH_KEYS and isinstance(v, str) and os.sep in v else public(v))
                for k, v in value.items() if k not in ("inputs",)}
    if isinstance(value, list):
        return [os.path.basename(v) if isinstance(v, str) and os.path.isabs(v) else public(v) for v in value]
    if isinstance(value, str):
        return public_message(value)
    return value


@dataclasses.dataclass
class Submission:
    """What a job needs to start: ``start(backend)`` submits it to the LocalBackend and returns the local job.

    ``release`` (when given) is called once when the job reaches a final state.
    """

    user: str
    kind: str
    params: dict[str, Any]
    home: str
    models_dir: str | None
    start: Callable[[LocalBackend], JobInfo]
    release: Callable[[], None] | None = None


class JobQueue:
    """Persistent jobs of all users, run one at a time, taking users in turn.

    The next job to start is the oldest queued job of the user whose last job started longest
    ago (a user who has not started one yet goes first), so one user's many jobs cannot keep
    the others waiting.

    Parameters
    ----------
    folder
        Where job records live.
    backend_for
        ``(home, models_dir) -> LocalBackend``: the backend a job runs on.
    poll_s
        How often the scheduler looks at the running job.
    on_end
        Called with the record of a job that has just reached a final state by any way (finished,
        failed, cancelled, interrupted by a restart).
    max_per_user
        Jobs one user may have queued or running at once.
    """

    def __init__(self, folder: str | os.PathLike, backend_for: Callable[[str, str | None], LocalBackend],
                 poll_s: float = 0.2, on_end: Callable[[dict[str, Any]], None] | None = None,
                 max_per_user: int = 5) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.backend_for = backend_for
        self.on_end = on_end
        self.max_per_user = max_per_user
        self.poll_s = poll_s
        self._lock = threading.RLock()
        self._starters: dict[str, Callable[[LocalBackend], JobInfo]] = {}
        self._releases: dict[str, Callable[[], None]] = {}
        self._owners: dict[str, str] = {}  # job id -> user
        self._last_start: dict[str, float] = {}  # user -> when their last job started
        for job_id in self._ids():
            try:
                self._owners[job_id] = self._read(job_id)["user"]
            except (OSError, ValueError, KeyError):
                continue
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._interrupt_unfinished()
        self._thread = threading.Thread(target=self._run, name="gpu-queue", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ records
    def _dir(self, job_id: str) -> Path:
        return self.folder / job_id

    def _read(self, job_id: str) -> dict[str, Any]:
        return json.loads((self._dir(job_id) / "record.json").read_text("utf-8"))

    def _write(self, record: dict[str, Any]) -> None:
        write_record(self._dir(record["job_id"]) / "record.json", record)

    def _ids(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if (p / "record.json").is_file())

    def record(self, user: str, job_id: str) -> dict[str, Any]:
        """The record of one of *user*'s jobs.

        Raises
        ------
        JobNotFound
            When *user* has no such job (another user's job is not found either).
        """
        if not isinstance(job_id, str) or not job_id.startswith(("train-", "batch-")) or "/" in job_id or ".." in job_id:
            raise JobNotFound(f"There is no job {job_id[:60]!r}.")
        try:
            record = self._read(job_id)
        except (OSError, ValueError):
            raise JobNotFound(f"There is no job {job_id!r}.") from None
        if record.get("user") != user:
            raise JobNotFound(f"There is no job {job_id!r}.")
        return record

    def folders(self, user: str) -> list[Path]:
        """The folders holding *user*'s jobs: their records, and their workers' folders outside *user*'s home."""
        out = []
        for job_id, owner in list(self._owners.items()):
            if owner != user:
                continue
            out.append(self._dir(job_id))
            try:
                record = self._read(job_id)
            except (OSError, ValueError):
                continue
            if record.get("local_id"):
                out.append(Path(record["home"]) / "jobs" / record["local_id"])
        return out

    # ------------------------------------------------------------------ API
    def submit(self, sub: Submission) -> JobInfo:
        """Queue a job; it starts when its user's turn comes.

        Raises
        ------
        QuotaExceeded
            When the user already has ``max_per_user`` jobs queued or running.
        """
        job_id = new_job_id(sub.kind)
        record = {"job_id": job_id, "user": sub.user, "kind": sub.kind, "state": "queued", "created": time.time(),
                  "params": sub.params, "result": {}, "error": "", "home": sub.home, "models_dir": sub.models_dir,
                  "local_id": None, "local_seq_limit": None}
        with self._lock:
            waiting = [r for r in self._records(sub.user) if r["state"] not in FINAL_STATES]
            if len(waiting) >= self.max_per_user:
                raise QuotaExceeded(f"You have {len(waiting)} jobs queued or running, the most this server takes "
                                    "from one user; wait for one to end or cancel one.")
            self._dir(job_id).mkdir(mode=0o700)
            self._owners[job_id] = sub.user
            self._starters[job_id] = sub.start
            if sub.release is not None:
                self._releases[job_id] = sub.release
            self._write(record)
        self._wake.set()
        return self._info(record)

    def job(self, user: str, job_id: str) -> JobInfo:
        """Current state of a job."""
        return self._info(self._refresh(self.record(user, job_id)))

    def _records(self, user: str) -> list[dict[str, Any]]:
        out = []
        for job_id, owner in list(self._owners.items()):
            if owner == user:
                try:
                    out.append(self._refresh(self._read(job_id)))
                except (OSError, ValueError):
                    continue
        return out

    def jobs(self, user: str) -> list[JobInfo]:
        """*user*'s jobs, oldest first."""
        return sorted((self._info(r) for r in self._records(user)), key=lambda j: j.created)

    def events(self, user: str, job_id: str, since: int = 0) -> list[JobEvent]:
        """Events with ``seq > since``: the local job's, then the server's own."""
        record = self._refresh(self.record(user, job_id))
        local: list[JobEvent] = []
        if record.get("local_id"):
            backend = self.backend_for(record["home"], record.get("models_dir"))
            try:
                local = backend.events(record["local_id"], 0)
            except MCPError:
                local = []
            limit = record.get("local_seq_limit")
            if limit is not None:
                local = [e for e in local if e.seq <= limit]
        own = read_events(self._dir(job_id))
        out = [dataclasses.replace(e, job_id=job_id, data=public(e.data)) for e in local + own]
        return [e for e in out if e.seq > since]

    def cancel(self, user: str, job_id: str) -> JobInfo:
        """Cancel a queued job now, or ask a running one to stop."""
        with self._lock:
            record = self._refresh(self.record(user, job_id))
            if record["state"] == "queued":
                self._finish_here(record, "cancelled", {"state": "cancelled"})
                self._starters.pop(job_id, None)
            elif record["state"] == "running" and record.get("local_id"):
                self.backend_for(record["home"], record.get("models_dir")).cancel(record["local_id"])
            return self._info(self._refresh(record))

    def remove_finished(self, user: str) -> None:
        """Delete the records and worker folders of *user*'s finished jobs."""
        with self._lock:
            for record in self._records(user):
                if record["state"] in FINAL_STATES:
                    if record.get("local_id"):
                        shutil.rmtree(Path(record["home"]) / "jobs" / record["local_id"], ignore_errors=True)
                    shutil.rmtree(self._dir(record["job_id"]), ignore_errors=True)
                    self._owners.pop(record["job_id"], None)

    def close(self) -> None:
        """Stop the scheduler (running workers go on until the next start marks them interrupted)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ internals
    def _info(self, record: dict[str, Any]) -> JobInfo:
        return JobInfo(job_id=record["job_id"], kind=record["kind"], state=record["state"], created=record["created"],
                       params=record["params"], result=public(record.get("result") or {}),
                       error=public_message(record.get("error", "")))

    def _refresh(self, record: dict[str, Any]) -> dict[str, Any]:
        """Copy the local job's state into a running job's record."""
        if record["state"] != "running" or not record.get("local_id"):
            return record
        with self._lock:
            record = self._read(record["job_id"])
            if record["state"] != "running":
                return record
            backend = self.backend_for(record["home"], record.get("models_dir"))
            local = backend.job(record["local_id"])
            if local.state in FINAL_STATES:
                record.update(state=local.state, result=local.result, error=local.error)
                self._write(record)
                self._wake.set()
                self._ended(record)
        return record

    def _ended(self, record: dict[str, Any]) -> None:
        release = self._releases.pop(record["job_id"], None)
        if release is not None:
            release()
        if self.on_end is not None:
            self.on_end(record)

    def _own_event(self, record: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
        last = 0
        if record.get("local_id"):
            backend = self.backend_for(record["home"], record.get("models_dir"))
            try:
                events = backend.events(record["local_id"], 0)
            except MCPError:
                events = []
            limit = record.get("local_seq_limit")
            last = max([e.seq for e in events if limit is None or e.seq <= limit], default=0)
        own = read_events(self._dir(record["job_id"]))
        last = max([last] + [e.seq for e in own])
        with open(self._dir(record["job_id"]) / "events.jsonl", "a", encoding="utf-8") as fh:
            EventWriter(fh, record["job_id"], start=last)(kind, data)

    def _finish_here(self, record: dict[str, Any], state: str, data: dict[str, Any], error: str = "") -> None:
        record.update(state=state, error=error or record.get("error", ""))
        self._write(record)
        self._own_event(record, "failed" if state == "failed" else "state", {**data, "state": state})
        self._ended(record)

    def _interrupt_unfinished(self) -> None:
        for job_id in self._ids():
            try:
                record = self._read(job_id)
            except (OSError, ValueError):
                continue
            if record["state"] in FINAL_STATES:
                continue
            if record.get("local_id"):
                backend = self.backend_for(record["home"], record.get("models_dir"))
                try:
                    events = backend.events(record["local_id"], 0)
                    record["local_seq_limit"] = events[-1].seq if events else 0
                    backend.cancel(record["local_id"])
                except MCPError:
                    record["local_seq_limit"] = 0
            self._finish_here(record, "interrupted", {"message": "The server restarted while this job was "
                                                      f"{record['state']}; submit it again."},
                              error="Interrupted by a server restart.")

    def _next_queued(self) -> dict[str, Any] | None:
        queued = []
        for job_id in self._ids():
            try:
                record = self._read(job_id)
            except (OSError, ValueError):
                continue
            if record["state"] == "running":
                return None  # one job at a time
            if record["state"] == "queued":
                queued.append(record)
        if not queued:
            return None
        return min(queued, key=lambda r: (self._last_start.get(r["user"], 0.0), r["created"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self._step()
            except Exception:  # the scheduler must outlive any one job's trouble
                import traceback

                traceback.print_exc()

    def _step(self) -> None:
        with self._lock:
            for job_id in self._ids():
                record = self._read(job_id)
                if record["state"] == "running":
                    self._refresh(record)
            record = self._next_queued()
            if record is None:
                return
            start = self._starters.pop(record["job_id"], None)
            if start is None:  # queued before a restart: cannot happen (interrupted at start), but be safe
                self._finish_here(record, "interrupted", {}, error="The job's inputs are gone.")
                return
            backend = self.backend_for(record["home"], record.get("models_dir"))
            self._last_start[record["user"]] = time.time()
            try:
                local = start(backend)
            except MCPError as exc:
                record["error"] = str(exc)
                self._finish_here(record, "failed", {"error": str(exc)}, error=str(exc))
                return
            record.update(state="running", local_id=local.job_id, started=time.time())
            self._write(record)
