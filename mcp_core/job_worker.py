"""The worker process of a job: ``python -m mcp_core.job_worker <job folder>``.

Reads ``job.json`` from the folder, runs the training or batch segmentation it describes,
and writes numbered :class:`~mcp_core.params.JobEvent` JSON lines to its standard output
(anything else printed goes to standard error). SIGTERM (or Ctrl+C) asks it to stop: training
saves its checkpoint within one batch, a batch stops after the frames in hand. See :mod:`mcp_core.jobs`.

With ``MULTICELLPOSE_JOB_PARENT=<pid>`` in its environment (a server sets it), the worker also
stops when that process is no longer its parent (the server was killed), and exits at the
latest :data:`ORPHAN_GRACE_S` seconds later, so no job runs on unsupervised.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from .errors import MCPError
from .jobs import EventWriter, read_events, read_job, write_job
from .threads import configure_environment

PARENT_ENV = "MULTICELLPOSE_JOB_PARENT"
ORPHAN_GRACE_S = 10.0


def watch_parent(parent: int, stop: threading.Event, poll_s: float = 0.5) -> None:
    """Set *stop* once *parent* is no longer this process's parent; exit if the job has not ended by then."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    stop.set()
    time.sleep(ORPHAN_GRACE_S)
    os._exit(1)


def run_job(job_dir: Path, emit: EventWriter, stop: threading.Event) -> tuple[str, dict[str, Any]]:
    """Run the job of *job_dir*; returns ``(final state, result)``."""
    record = read_job(job_dir)
    inputs = record.get("inputs", {})
    if record["kind"] == "train":
        from .params import TrainParams
        from .train import train

        result = train(inputs["dataset"], TrainParams(**record["params"]), progress=emit, should_stop=stop.is_set)
        out = dataclasses.asdict(result)
        out["model"] = Path(result.model_path).stem
        return ("cancelled" if result.cancelled else "done"), out
    if record["kind"] == "batch" and inputs.get("cluster"):
        from .distributed import batch_result, segment_folder
        from .params import SegmentParams

        out = batch_result(segment_folder(inputs["model"], inputs["paths"], SegmentParams(**record["params"]),
                                          inputs.get("folder"), inputs["cluster"], inputs.get("cluster_config"),
                                          progress=emit, should_stop=stop.is_set))
        return ("cancelled" if out["cancelled"] else "done"), out
    if record["kind"] == "batch":
        from .params import SegmentParams
        from .segment import segment_files

        out = segment_files(inputs["model"], inputs["paths"], SegmentParams(**record["params"]),
                            folder=inputs.get("folder"), progress=emit, should_stop=stop.is_set)
        return ("cancelled" if out["cancelled"] else "done"), out
    raise MCPError(f"Unknown job kind {record['kind']!r} in {job_dir}.")


def main(argv: list[str] | None = None) -> int:
    """Entry point; the only argument is the job folder."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mcp_core.job_worker JOB_FOLDER", file=sys.stderr)
        return 2
    job_dir = Path(args[0]).resolve()
    configure_environment()  # before the job imports torch (values set by the parent are kept)
    # Events own the real standard output; stray prints of libraries go to standard error.
    events = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if os.environ.get(PARENT_ENV, "").isdigit():
        threading.Thread(target=watch_parent, args=(int(os.environ[PARENT_ENV]), stop), daemon=True).start()
    return serve(job_dir, events, stop)


def serve(job_dir: Path, events: TextIO, stop: threading.Event) -> int:
    """Run the job of *job_dir*, writing its numbered events to *events*; returns the exit status.

    Parameters
    ----------
    events
        Where event lines go: the worker's standard output, or the job's ``events.jsonl`` opened for
        appending when the job runs under submitit (:mod:`mcp_core.slurm`).
    stop
        Set to ask the job to stop (the signal handlers do).
    """
    record = read_job(job_dir)
    previous = read_events(job_dir)
    emit = EventWriter(events, record["job_id"], start=previous[-1].seq if previous else 0)
    record.update(state="running", started=time.time())
    write_job(job_dir, record)
    emit("state", {"state": "running"})
    try:
        state, result = run_job(job_dir, emit, stop)
        error = ""
    except MCPError as exc:
        state, result, error = "failed", {}, str(exc)
    except Exception as exc:  # a bug or a library failure: keep the traceback for the log
        traceback.print_exc()
        state, result, error = "failed", {}, f"{type(exc).__name__}: {exc}"
    record = read_job(job_dir)
    record.update(state=state, result=result, error=error, finished=time.time())
    write_job(job_dir, record)
    if state == "done":
        emit("done", {"state": "done", **result})
    elif state == "failed":
        emit("failed", {"state": "failed", "error": error})
    else:
        emit("state", {"state": state, **result})
    return 0 if state != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
