"""Jobs: long work (training, batch segmentation) in a subprocess that speaks JSON lines.

Each job has a folder ``<jobs>/<job_id>/`` holding

``job.json``
    The :class:`~mcp_core.params.JobInfo` (kind, state, parameters, result, error) plus the
    job's inputs; written by the submitter, then by the worker as the state changes.
``events.jsonl``
    The worker's standard output: one :class:`~mcp_core.params.JobEvent` per line, numbered
    from 1 without gaps, so a client re-attaches by asking for events after the last it saw.
``stderr.log``
    Everything else the worker prints (warnings, tracebacks).
``process.json``
    The worker's process id.
``executor.json``
    Only for jobs submitted through submitit (:mod:`mcp_core.slurm`): the executor and its job id,
    which say whether the job is alive and how to cancel it (``scancel`` on Slurm).

The worker is ``python -m mcp_core.job_worker <job folder>``; it runs the same way by hand on
a cluster node. Cancelling sends it SIGTERM: training stops within one batch and keeps its
checkpoint, a batch stops after the frames in hand (at most 8). A worker that dies without
saying so (killed, out of memory) is reported as failed, with the end of its error output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import JobError
from .params import JobEvent, JobInfo, JobKind

FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
JOB_FILE, EVENTS_FILE, STDERR_FILE, PROCESS_FILE, CANCEL_FILE, EXECUTOR_FILE = (
    "job.json", "events.jsonl", "stderr.log", "process.json", "cancel_requested", "executor.json")


def new_job_id(kind: str) -> str:
    """A sortable, unique job id such as ``train-20250101-120000-a1b2c3``."""
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def read_job(job_dir: Path) -> dict[str, Any]:
    """The raw ``job.json`` of a job folder."""
    try:
        return json.loads((job_dir / JOB_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise JobError(f"Job folder {job_dir} has no readable {JOB_FILE}: {exc}.") from exc


def plain(obj: Any) -> Any:
    """``json.dumps``'s ``default`` for job records, events and the wire: arrays and tuples as lists, else text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a job record (``job.json`` here, the server queue's ``record.json``) atomically."""
    atomic_write_text(path, json.dumps(record, indent=1, default=plain))


def write_job(job_dir: Path, record: dict[str, Any]) -> None:
    """Write ``job.json`` atomically."""
    write_record(job_dir / JOB_FILE, record)


def wait_until_final(job: Callable[[str], JobInfo], job_id: str, timeout: float | None = None,
                     interval: float = 0.1) -> JobInfo:
    """Poll ``job(job_id)`` until the job reaches one of :data:`FINAL_STATES` (or *timeout* seconds pass)."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        info = job(job_id)
        if info.state in FINAL_STATES or (end is not None and time.monotonic() > end):
            return info
        time.sleep(interval)


def info_of(record: dict[str, Any]) -> JobInfo:
    """The :class:`JobInfo` part of a ``job.json`` record."""
    fields = {f.name for f in dataclasses.fields(JobInfo)}
    return JobInfo(**{k: v for k, v in record.items() if k in fields})


def read_events(job_dir: Path, since: int = 0) -> list[JobEvent]:
    """Events with ``seq > since`` (a half-written last line is left for the next call)."""
    path = job_dir / EVENTS_FILE
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            if isinstance(raw, dict) and raw.get("seq", 0) > since:
                out.append(JobEvent(seq=int(raw["seq"]), job_id=str(raw.get("job_id", "")), kind=raw["kind"],
                                    data=dict(raw.get("data") or {}), time=float(raw.get("time", 0.0))))
    return out


class EventWriter:
    """Numbers events and writes them as JSON lines (the worker's side of the protocol)."""

    def __init__(self, stream, job_id: str, start: int = 0) -> None:
        self.stream = stream
        self.job_id = job_id
        self.seq = start

    def __call__(self, kind: str, data: dict[str, Any] | None = None) -> JobEvent:
        self.seq += 1
        event = JobEvent(seq=self.seq, job_id=self.job_id, kind=kind, data=dict(data or {}))  # type: ignore[arg-type]
        self.stream.write(json.dumps(dataclasses.asdict(event), default=plain) + "\n")
        self.stream.flush()
        return event


class JobStore:
    """Starts, follows and cancels the jobs kept under one folder.

    Parameters
    ----------
    jobs_dir
        Folder of job folders (created on first use).
    """

    def __init__(self, jobs_dir: str | os.PathLike) -> None:
        self.jobs_dir = Path(jobs_dir)
        self._procs: dict[str, subprocess.Popen] = {}
        self._reap_lock = threading.Lock()

    def submit(self, kind: JobKind, params: dict[str, Any], inputs: dict[str, Any]) -> JobInfo:
        """Create a job folder and start its worker.

        Parameters
        ----------
        kind
            ``"train"`` or ``"batch"``.
        params
            The job's parameters (a ``TrainParams``/``SegmentParams`` as a dict).
        inputs
            What the worker reads besides the parameters (dataset folder, image paths, model).
        """
        job_id = new_job_id(kind)
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=False)
        info = JobInfo(job_id=job_id, kind=kind, state="queued", params=params)
        write_job(job_dir, {**dataclasses.asdict(info), "inputs": inputs})
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        with open(job_dir / EVENTS_FILE, "ab") as out, open(job_dir / STDERR_FILE, "ab") as err:
            try:
                proc = subprocess.Popen([sys.executable, "-m", "mcp_core.job_worker", str(job_dir)], stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                        cwd=str(job_dir))
            except OSError as exc:
                raise JobError(f"Could not start the {kind} job: {exc}.") from exc
        self._procs[job_id] = proc
        atomic_write_text(job_dir / PROCESS_FILE, json.dumps({"pid": proc.pid, "started": time.time()}))
        return info

    def folder(self, job_id: str) -> Path:
        """The folder of a job.

        Raises
        ------
        JobError
            When there is no such job (ids with path separators are refused).
        """
        if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
            raise JobError(f"{job_id!r} is not a job id.")
        path = self.jobs_dir / job_id
        if not (path / JOB_FILE).exists():
            raise JobError(f"There is no job {job_id!r}.")
        return path

    def job(self, job_id: str) -> JobInfo:
        """Current state; a worker that died without a final state is marked failed (or cancelled)."""
        job_dir = self.folder(job_id)
        record = read_job(job_dir)
        if record.get("state") not in FINAL_STATES and not self._alive(job_id, job_dir):
            record = self._reap(job_id, job_dir)
        return info_of(record)

    def jobs(self) -> list[JobInfo]:
        """Every job, oldest first."""
        if not self.jobs_dir.is_dir():
            return []
        ids = sorted(p.name for p in self.jobs_dir.iterdir() if (p / JOB_FILE).exists())
        return sorted((self.job(i) for i in ids), key=lambda j: j.created)

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """Events after ``since``; checks first whether the worker is still alive."""
        self.job(job_id)
        return read_events(self.folder(job_id), since)

    def cancel(self, job_id: str) -> JobInfo:
        """Ask the worker to stop (SIGTERM); returns the state now (final once the worker has stopped)."""
        job_dir = self.folder(job_id)
        info = self.job(job_id)
        if info.state in FINAL_STATES:
            return info
        atomic_write_text(job_dir / CANCEL_FILE, str(time.time()))
        pid = self._pid(job_dir)
        executor = _executor(job_dir)
        if executor is not None and executor.get("cluster") == "slurm":
            from .slurm import cancel_slurm_job

            cancel_slurm_job(executor)
        elif pid is not None and self._alive(job_id, job_dir):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return self.job(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job reaches a final state (or *timeout* seconds pass)."""
        return wait_until_final(self.job, job_id, timeout)

    def remove_finished(self) -> int:
        """Delete the folders of finished jobs; returns how many."""
        import shutil

        n = 0
        for info in self.jobs():
            if info.state in FINAL_STATES:
                shutil.rmtree(self.jobs_dir / info.job_id, ignore_errors=True)
                self._procs.pop(info.job_id, None)
                n += 1
        return n

    # ------------------------------------------------------------------ process checks
    @staticmethod
    def _pid(job_dir: Path) -> int | None:
        try:
            return int(json.loads((job_dir / PROCESS_FILE).read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def _alive(self, job_id: str, job_dir: Path) -> bool:
        proc = self._procs.get(job_id)
        if proc is not None:
            return proc.poll() is None
        executor = _executor(job_dir)
        if executor is not None:
            from .slurm import executor_alive

            return executor_alive(executor)
        pid = self._pid(job_dir)
        if pid is None:
            # Submitted by another process that has not written the pid yet.
            return time.time() - read_job(job_dir).get("created", 0) < 30
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # guard against a recycled pid
            try:
                return str(job_dir).encode() in cmdline.read_bytes()
            except OSError:
                return False
        return True

    def _reap(self, job_id: str, job_dir: Path) -> dict[str, Any]:
        """Record the end of a worker that stopped without a final state."""
        with self._reap_lock:
            record = read_job(job_dir)  # the worker may have finished between the two reads
            if record.get("state") in FINAL_STATES:
                return record
            return self._record_end(job_id, job_dir, record)

    def _record_end(self, job_id: str, job_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
        proc = self._procs.get(job_id)
        code = proc.returncode if proc is not None else None
        if (job_dir / CANCEL_FILE).exists():
            record.update(state="cancelled")
            data = {"state": "cancelled"}
            kind = "state"
        else:
            tail = _tail(job_dir / STDERR_FILE)
            record.update(state="failed", error=f"The job process ended unexpectedly (exit code {code}). {tail}".strip())
            data = {"state": "failed", "error": record["error"]}
            kind = "failed"
        last = read_events(job_dir)
        events = job_dir / EVENTS_FILE
        with open(events, "a+b") as fh:  # finish a line the worker may have left half-written
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
        with open(events, "a", encoding="utf-8") as fh:
            EventWriter(fh, job_id, start=last[-1].seq if last else 0)(kind, data)
        write_job(job_dir, record)
        return record


def _executor(job_dir: Path) -> dict[str, Any] | None:
    """The ``executor.json`` of a job submitted through submitit, else ``None``."""
    try:
        return json.loads((job_dir / EXECUTOR_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
