"""Jobs submitted through submitit: training (or a batch) as a Slurm job that writes the usual job events.

:func:`submit_job` creates an ordinary job folder (:mod:`mcp_core.jobs`), submits
:func:`run_submitted` with submitit and records the executor's job id in ``executor.json``. On the
node, :func:`run_submitted` writes its process id, then runs :func:`mcp_core.job_worker.serve`,
appending the numbered events to the folder's ``events.jsonl``. So :class:`~mcp_core.jobs.JobStore`
(and through it ``LocalBackend`` and the app) follows the job as any other, asks Slurm whether it is
still alive, and cancels it with ``scancel`` (Slurm then sends SIGTERM: training saves its weights).

Resources come from :class:`~mcp_core.cluster.ClusterConfig`; ``cluster="local"`` runs the same job
with submitit's local executor (no Slurm needed). The job function reaches the node as submitit's
pickle in the job folder, which only this user writes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from .atomic import atomic_write_text
from .cluster import ClusterConfig
from .errors import JobError, ParameterError
from .jobs import CANCEL_FILE, EVENTS_FILE, EXECUTOR_FILE, PROCESS_FILE, JobStore, new_job_id, write_job
from .params import JobInfo, JobKind

#: Seconds between Slurm's warning signal (SIGTERM) and the time limit, as in the README's batch script.
SIGNAL_DELAY_S = 120
#: Slurm states after which a job runs no more.
_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
          "DEADLINE", "FINISHED", "INTERRUPTED")


def executor_parameters(config: ClusterConfig, name: str) -> dict[str, Any]:
    """submitit ``update_parameters`` keywords for *config* (``slurm_*`` ones are ignored by the local executor).

    Raises
    ------
    ParameterError
        For a walltime that is not ``[D-]HH:MM:SS`` or a ``job_extra`` entry that is not ``--key=value``.
    """
    from dask.utils import parse_bytes

    try:
        days, _, clock = config.walltime.rpartition("-")
        h, m, s = (int(v) for v in clock.split(":"))
        minutes = max(1, (int(days or 0) * 24 + h) * 60 + m + (s > 0))
    except ValueError as exc:
        raise ParameterError(f"walltime {config.walltime!r} is not [D-]HH:MM:SS.") from exc
    extra: dict[str, str] = {}
    for item in config.job_extra:
        key, sep, value = item.lstrip("-").partition("=")
        if not sep or not key:
            raise ParameterError(f"job_extra entry {item!r} is not of the form --key=value.")
        extra[key] = value
    try:
        mem_gb = max(1, round(parse_bytes(config.memory) / 1e9))
    except ValueError as exc:
        raise ParameterError(f"memory {config.memory!r} is not a size such as '48GB'.") from exc
    params: dict[str, Any] = {
        "name": name, "timeout_min": minutes, "cpus_per_task": config.cores, "mem_gb": mem_gb,
        "slurm_signal_delay_s": SIGNAL_DELAY_S, "slurm_setup": list(config.prologue),
        "slurm_additional_parameters": extra,
    }
    for key, value in (("slurm_partition", config.queue), ("slurm_account", config.account),
                       ("slurm_gres", config.gres)):
        if value:
            params[key] = value
    return params


def submit_job(store: JobStore, kind: JobKind, params: dict[str, Any], inputs: dict[str, Any],
               config: ClusterConfig | None = None, cluster: Literal["slurm", "local"] = "slurm") -> tuple[JobInfo, str]:
    """Submit a job through submitit; returns its :class:`JobInfo` and the executor's job id.

    Parameters
    ----------
    store
        The job store whose folder gets the job (``LocalBackend().job_store`` for the app to see it).
    kind, params, inputs
        As for :meth:`mcp_core.jobs.JobStore.submit`.
    config
        Resources; the defaults of :class:`ClusterConfig` (one GPU, 8 cores, 48 GB, 8 hours) when left out.
    cluster
        ``"slurm"``, or ``"local"`` for submitit's local executor.

    Raises
    ------
    JobError
        When submission fails (no ``sbatch``, refused by Slurm).
    """
    import submitit

    config = config or ClusterConfig()
    job_id = new_job_id(kind)
    job_dir = store.jobs_dir / job_id
    job_dir.mkdir(parents=True, exist_ok=False)
    info = JobInfo(job_id=job_id, kind=kind, state="queued", params=params)
    write_job(job_dir, {**asdict(info), "inputs": inputs})
    folder = job_dir / "submitit"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**executor_parameters(config, f"mcp-{kind}"))
        job = executor.submit(run_submitted, str(job_dir))
    except (OSError, RuntimeError, submitit.core.utils.FailedJobError) as exc:
        raise JobError(f"Could not submit the {kind} job to {cluster}: {exc}.") from exc
    atomic_write_text(job_dir / EXECUTOR_FILE, json.dumps({"cluster": cluster, "job_id": str(job.job_id),
                                                           "folder": str(folder), "submitted": time.time()}))
    return info, str(job.job_id)


def run_submitted(job_dir: str) -> int:
    """The body of a submitted job, on the node: record the process, then serve the job's events."""
    from .job_worker import serve
    from .threads import configure_environment

    path = Path(job_dir)
    configure_environment()
    atomic_write_text(path / PROCESS_FILE, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                      "started": time.time()}))
    stop = threading.Event()
    # SIGUSR2: Slurm's warning SIGNAL_DELAY_S before the time limit (submitit asks for it); SIGTERM: scancel.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(sig, lambda *_: stop.set())
    if (path / CANCEL_FILE).exists():  # cancelled while it waited in the queue
        stop.set()
    with open(path / EVENTS_FILE, "a", encoding="utf-8") as events:
        return serve(path, events, stop)


def executor_alive(executor: dict[str, Any]) -> bool:
    """Whether a submitted job may still run (queued or running); unknown counts as alive."""
    if executor.get("cluster") == "slurm":
        import submitit

        state = submitit.SlurmJob(folder=executor["folder"], job_id=executor["job_id"]).state.upper()
        return not state.startswith(_ENDED)
    proc = Path(f"/proc/{executor['job_id']}")  # the local executor's job id is its controller's process id
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # ended, not yet reaped by the process that submitted it
        return executor["folder"].encode() in proc.joinpath("cmdline").read_bytes()  # not a recycled pid
    except (OSError, IndexError):
        return False


def cancel_slurm_job(executor: dict[str, Any]) -> None:
    """``scancel`` a submitted Slurm job (Slurm sends it SIGTERM first)."""
    import submitit

    submitit.SlurmJob(folder=executor["folder"], job_id=executor["job_id"]).cancel(check=False)
