"""Dask clusters from a short spec: ``local``, ``local:N``, ``slurm`` or a scheduler address.

``local``
    A cluster of worker processes on this machine: one per GPU, pinned with
    ``CUDA_VISIBLE_DEVICES``, or (without GPUs) one per four CPU cores.
``local:N``
    N worker processes (GPUs shared round-robin when there are any).
``slurm``
    A dask-jobqueue ``SLURMCluster`` whose jobs are described by the ``cluster`` section of a
    JSON config file (:class:`ClusterConfig`; ``$MULTICELLPOSE_HOME/cluster.json`` by default).
``tcp://host:8786``
    An existing scheduler.

dask, distributed and dask-jobqueue are imported here only when a cluster is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pdataclass

from .errors import ParameterError

CONFIG_NAME = "cluster.json"


@pdataclass(config=ConfigDict(extra="forbid"))
class ClusterConfig:
    """Resources of one batch job (a Slurm job running dask workers, or a submitit training job)."""

    queue: str | None = Field(None, description="Slurm partition.")
    account: str | None = Field(None, description="Slurm account to charge.")
    cores: int = Field(8, ge=1, le=1024, description="CPU cores per job.")
    processes: int = Field(1, ge=1, le=64, description="dask worker processes per job.")
    memory: str = Field("48GB", description="Memory per job, e.g. '48GB'.")
    gres: str | None = Field("gpu:1", description="Generic resources per job, e.g. 'gpu:1'; null for none.")
    walltime: str = Field("08:00:00", description="Time limit per job, HH:MM:SS.")
    job_extra: list[str] = Field(default_factory=list, description="Further #SBATCH options, e.g. '--qos=high'.")
    prologue: list[str] = Field(default_factory=list, description="Shell lines run before the worker starts.")
    jobs: int = Field(1, ge=0, le=10000, description="Jobs started at once.")
    max_jobs: int = Field(0, ge=0, le=10000, description="Above 'jobs': scale adaptively up to this many jobs.")
    python: str | None = Field(None, description="Python on the compute nodes (default: this one).")
    log_directory: str | None = Field(None, description="Folder for the jobs' output files.")
    scheduler_host: str | None = Field(None, description="Address the dask scheduler listens on (one the nodes reach).")


def config_path(path: str | os.PathLike | None = None) -> Path:
    """The cluster config file: *path*, else ``$MULTICELLPOSE_HOME/cluster.json``."""
    if path is not None:
        return Path(path)
    from .backend import default_home

    return default_home() / CONFIG_NAME


def load_config(path: str | os.PathLike | None = None) -> ClusterConfig:
    """Read the ``cluster`` section of a JSON config file.

    Raises
    ------
    ParameterError
        When the file is missing, not JSON, has no ``cluster`` section or a bad value in it.
    """
    file = config_path(path)
    try:
        raw = json.loads(file.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ParameterError(f"No cluster config at {file}: write one with a \"cluster\" section "
                             f"(queue, cores, memory, gres, walltime, job_extra, jobs).") from exc
    except (OSError, ValueError) as exc:
        raise ParameterError(f"The cluster config {file} is not readable JSON: {exc}.") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cluster"), dict):
        raise ParameterError(f"The cluster config {file} has no \"cluster\" section (an object).")
    try:
        return ClusterConfig(**raw["cluster"])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ParameterError(f"The cluster config {file} has bad values: {problems}.") from exc


def resources(path: str | os.PathLike | None = None) -> ClusterConfig:
    """The resources of submitted jobs: *path*'s ``cluster`` section, else ``$MULTICELLPOSE_HOME/cluster.json``'s
    when that exists, else the defaults of :class:`ClusterConfig` (the README's batch script)."""
    return load_config(path) if path is not None or config_path().is_file() else ClusterConfig()


def visible_gpus() -> list[str]:
    """Ids of the GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def local_cluster(n_workers: int | None = None, gpus: list[str] | None = None):
    """A ``SpecCluster`` of worker processes on this machine, one thread each.

    Parameters
    ----------
    n_workers
        Worker processes; default one per GPU, or one per four CPU cores without GPUs. Each gets an
        equal share of the cores for torch (``$MCP_TORCH_THREADS`` when set).
    gpus
        GPU ids to pin workers to (round-robin); default :func:`visible_gpus`.
    """
    import psutil
    from distributed import Nanny, Scheduler, SpecCluster

    from .threads import THREADS_ENV, available_cpus

    gpus = visible_gpus() if gpus is None else gpus
    cpus = available_cpus()
    n = n_workers or len(gpus) or max(1, cpus // 4)
    memory = psutil.virtual_memory().total // n
    threads = os.environ.get(THREADS_ENV) or str(max(1, cpus // n))  # the cores shared out, unless fixed
    workers = {}
    for i in range(n):
        env = {THREADS_ENV: threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        workers[f"worker-{i}"] = {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": memory, "env": env}}
    scheduler = {"cls": Scheduler,
                 "options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "dashboard": False}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40, name="multicellpose")


def slurm_cluster(config: ClusterConfig):
    """A dask-jobqueue ``SLURMCluster`` for *config*, not yet scaled (see :func:`scale`)."""
    from dask_jobqueue import SLURMCluster

    extra = ([f"--gres={config.gres}"] if config.gres else []) + list(config.job_extra)
    kwargs: dict[str, Any] = {
        "queue": config.queue, "account": config.account, "cores": config.cores, "processes": config.processes,
        "memory": config.memory, "walltime": config.walltime, "job_extra_directives": extra,
        "job_script_prologue": list(config.prologue), "python": config.python or sys.executable,
        "job_name": "mcp-dask", "scheduler_options": {"dashboard_address": "127.0.0.1:0", "dashboard": False},
    }
    if config.scheduler_host:
        kwargs["scheduler_options"]["host"] = config.scheduler_host
    if config.log_directory:
        kwargs["log_directory"] = config.log_directory
    return SLURMCluster(**kwargs)


def scale(cluster, config: ClusterConfig) -> None:
    """Start ``config.jobs`` jobs, or scale adaptively up to ``config.max_jobs``."""
    if config.max_jobs > config.jobs:
        cluster.adapt(minimum_jobs=config.jobs, maximum_jobs=config.max_jobs)
    else:
        cluster.scale(jobs=max(config.jobs, 1))


@contextlib.contextmanager
def open_client(spec: str, config: ClusterConfig | str | os.PathLike | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster *spec* names; a cluster made here is closed on exit.

    Parameters
    ----------
    spec
        ``local``, ``local:N``, ``slurm`` or a scheduler address (``tcp://host:8786``).
    config
        For ``slurm``: a :class:`ClusterConfig` or the config file to read (default
        ``$MULTICELLPOSE_HOME/cluster.json``).

    Raises
    ------
    ParameterError
        For an unknown spec or a bad worker count.
    """
    from distributed import Client

    if "://" in spec:
        try:
            client = Client(spec, timeout="30s")
        except OSError as exc:
            raise ParameterError(f"Cannot reach the dask scheduler at {spec}: {exc}.") from exc
        with client:
            yield client
        return
    if spec == "slurm":
        cfg = config if isinstance(config, ClusterConfig) else load_config(config)
        cluster = slurm_cluster(cfg)
        scale(cluster, cfg)
    elif spec == "local" or spec.startswith("local:"):
        count = spec.partition(":")[2]
        if count and not (count.isdigit() and int(count) > 0):
            raise ParameterError(f"--cluster {spec}: the worker count after 'local:' must be a positive number.")
        cluster = local_cluster(int(count) if count else None)
    else:
        raise ParameterError(f"Unknown cluster {spec!r}: use local, local:N, slurm or a scheduler address tcp://host:port.")
    with cluster, Client(cluster) as client:
        yield client
