"""The Backend seam: what the UI, the CLI and the server ask of a compute backend.

``LocalBackend`` runs in this process (jobs in subprocesses); ``mcp_remote.RemoteBackend``
runs the same calls on a server over gRPC. Both take and return the dataclasses of
:mod:`mcp_core.params`, so callers never know which one they hold.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from .atomic import atomic_write, atomic_write_bytes
from .catalog import PRETRAINED, SCRATCH, ModelCatalog, pretrained_path, sidecar_path
from .errors import JobError, ModelError
from .jobs import JobStore
from .params import (BackendInfo, JobEvent, JobInfo, ModelInfo, SegmentParams, SegmentResult, TrainParams, Usage,
                     to_dict)


#: Called with ``(bytes done, bytes total)`` while a backend call moves files.
Progress = Callable[[int, int], None]
#: Where a :class:`LocalBackend` runs training jobs (see its ``train_executor``).
TrainExecutor = Literal["", "slurm", "local"]


@runtime_checkable
class Backend(Protocol):
    """A compute backend."""

    #: ``"local"`` or ``"remote"``.
    kind: str
    #: Whether calls compute on this machine. The app then runs them in a worker process, to which the
    #: backend travels pickled (as its configuration); a remote backend's calls only wait on the network.
    computes_here: bool

    def info(self) -> BackendInfo:
        """Kind, device and versions."""

    def list_models(self) -> list[ModelInfo]:
        """Models this backend can run."""

    def add_model(self, path: str | os.PathLike, progress: Progress | None = None) -> ModelInfo:
        """Register a model file (state dict + JSON sidecar) for use."""

    def download_model(self, name: str, folder: str | os.PathLike | None = None, progress: Progress | None = None
                       ) -> Path:
        """A user or shared model's ``.pth`` (its sidecar beside it) on this machine: fetched from a server into
        *folder* (the local model folder by default), or a local one's own file (copied when *folder* is given)."""

    def download_weights(self, name: str = "cpsam", progress: Progress | None = None) -> ModelInfo:
        """Fetch cellpose's pretrained weights *name* where this backend computes (cellpose's download path)."""

    def segment(self, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
        """Segment ``(Y, X, C)`` images."""

    def submit_training(self, dataset: str | os.PathLike, params: TrainParams, progress: Progress | None = None
                        ) -> JobInfo:
        """Start a training job on a folder of images with labels (*progress*: of the upload, if any)."""

    def submit_batch(self, paths: Sequence[str | os.PathLike], params: SegmentParams) -> JobInfo:
        """Start a batch segmentation job writing ``_pred.npy`` beside each image."""

    def job(self, job_id: str) -> JobInfo:
        """Current state of a job."""

    def jobs(self) -> list[JobInfo]:
        """All jobs of this user."""

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """Events of a job with ``seq > since``."""

    def cancel(self, job_id: str) -> JobInfo:
        """Stop a job (training keeps its last checkpoint)."""

    def fetch_predictions(self, job_id: str, folder: str | os.PathLike | None = None) -> list[Path]:
        """The ``_pred.npy`` files of a finished batch job, beside each image (or in *folder*) on this machine."""

    def close(self) -> None:
        """Release connections (a local backend holds none)."""

    def usage(self) -> Usage:
        """Storage used by this backend's training files."""

    def clear_training_files(self) -> Usage:
        """Delete uploaded datasets and job working files (never models)."""


#: The last model ``LocalBackend.segment`` loaded in this process, and the lock around loading it.
_LOADED: dict = {}
_MODEL_LOCK = threading.Lock()


def default_home() -> Path:
    """Where MultiCellPose keeps models and job files: ``$MULTICELLPOSE_HOME`` or ``~/.multicellpose``."""
    return Path(os.environ.get("MULTICELLPOSE_HOME") or Path.home() / ".multicellpose")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class LocalBackend:
    """Backend that runs on this machine.

    Parameters
    ----------
    home
        Folder for models (``models/``) and job files (``jobs/``); see :func:`default_home`.
    models_dir
        Folder of the models instead of ``home/models`` (a server's shared model folder).
    cluster, cluster_config
        Where batch jobs segment: ``None`` in the job's own process, else a dask cluster spec
        (``local``, ``local:N``, ``slurm`` with its config file, ``tcp://host:port``; see
        :func:`mcp_core.cluster.open_client`). The config file's ``cluster`` section also gives the
        resources of training jobs submitted through submitit.
    train_executor
        Where training jobs run: ``""`` in a subprocess here, ``"slurm"`` as Slurm jobs through submitit
        (:mod:`mcp_core.slurm`), ``"local"`` through submitit's local executor. Jobs are followed and
        cancelled the same way in every case.
    """

    kind = "local"
    computes_here = True

    def __init__(self, home: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
                 cluster: str | None = None, cluster_config: str | os.PathLike | None = None,
                 train_executor: TrainExecutor = "") -> None:
        self.cluster, self.cluster_config = cluster, (str(cluster_config) if cluster_config else None)
        self.train_executor = train_executor
        self.home = Path(home) if home else default_home()
        self.models_dir = Path(models_dir) if models_dir else self.home / "models"
        self.jobs_dir = self.home / "jobs"
        self.catalog = ModelCatalog(self.models_dir)
        self.job_store = JobStore(self.jobs_dir)

    def __getstate__(self) -> dict:
        """Pickled as its configuration: unpickled, it is a new backend on the same folders."""
        return {"home": self.home, "models_dir": self.models_dir, "cluster": self.cluster,
                "cluster_config": self.cluster_config, "train_executor": self.train_executor}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def close(self) -> None:
        """Nothing to release: jobs run on after the backend object is gone."""

    def info(self) -> BackendInfo:
        """Kind, device and versions, without importing torch in this process."""
        versions = {d: _version(d) for d in ("multicellpose", "cellpose", "torch", "numpy")}
        versions["python"] = platform.python_version()
        return BackendInfo(kind="local", device=_describe_device(), versions=versions, host=platform.node())

    def usage(self) -> Usage:
        """Bytes and files under the job folder."""
        total = files = 0
        if self.jobs_dir.exists():
            for p in self.jobs_dir.rglob("*"):
                if p.is_file():
                    total += p.stat().st_size
                    files += 1
        return Usage(bytes_used=total, files=files)

    def clear_training_files(self) -> Usage:
        """Remove finished jobs' working files (running jobs and models are kept)."""
        self.job_store.remove_finished()
        return self.usage()

    # ------------------------------------------------------------------ models
    def list_models(self) -> list[ModelInfo]:
        """Cellpose's pretrained models and the models under ``home/models`` (reads sidecars only)."""
        return self.catalog.list()

    def add_model(self, path: str | os.PathLike, progress: Progress | None = None) -> ModelInfo:
        """Check a model file and copy it (with its sidecar) into ``home/models``; *progress* hears the end."""
        from .model import inspect_model  # imports torch

        info = self.catalog.add(path, inspect_model(path))
        if progress is not None:
            size = Path(path).stat().st_size
            progress(size, size)
        return info

    def download_model(self, name: str, folder: str | os.PathLike | None = None, progress: Progress | None = None
                       ) -> Path:
        """The model's file here; copied with its sidecar into *folder* (a free name there) when given.

        Raises
        ------
        ModelError
            For an unknown or builtin model (cellpose keeps those weights).
        """
        spec = self.catalog.resolve(name)
        if name in PRETRAINED:
            raise ModelError(f"{name} is a builtin model: cellpose keeps its weights in its own model folder.")
        path = Path(spec)
        if folder is None or Path(folder).resolve() == path.parent.resolve():
            return path
        dest = ModelCatalog(Path(folder)).unique_path(path.stem)
        size, done = path.stat().st_size, 0
        with open(path, "rb") as fin, atomic_write(dest) as fout:
            while block := fin.read(1 << 22):
                fout.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, size)
        atomic_write_bytes(sidecar_path(dest), sidecar_path(path).read_bytes())
        return dest

    def download_weights(self, name: str = "cpsam", progress: Progress | None = None) -> ModelInfo:
        """Download cellpose's pretrained weights *name* into its model folder, in a child process (torch stays
        out of this one); *progress* hears ``(bytes, total)``.

        Raises
        ------
        ModelError
            For an unknown name, or when the download fails: the message says where to copy the file instead.
        """
        from .weights import fetch_weights

        fetch_weights(name, progress)
        return next(m for m in self.list_models() if m.name == name)

    def segment(self, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
        """Segment ``(Y, X, C)`` images with the model named ``params.model`` (kept loaded between calls)."""
        from .segment import segment

        return segment(self._model(params.model), list(images), params)

    def _model(self, name: str):
        """The loaded model, kept per process (the app calls from a fresh backend in a worker process)."""
        spec = self.catalog.resolve(name)
        key = (spec, os.stat(spec).st_mtime if os.path.isfile(spec) else 0.0)
        with _MODEL_LOCK:
            if _LOADED.get("key") != key:
                from .model import open_model

                _LOADED.clear()
                _LOADED.update(key=key, model=open_model(spec))
            return _LOADED["model"]

    # -------------------------------------------------------------------- jobs
    def submit_training(self, dataset: str | os.PathLike, params: TrainParams, progress: Progress | None = None
                        ) -> JobInfo:
        """Train in a subprocess; the model goes to ``home/models/<model_name>.pth`` (a free name).

        *progress* is not called: the job reads the folder in place, nothing is uploaded.
        """
        folder = Path(dataset)
        if not folder.is_dir():
            raise JobError(f"The training folder {folder} does not exist.")
        base = params.base_model
        if base in PRETRAINED:
            pretrained_path(base)  # a clear error now rather than in the job
        elif base not in SCRATCH and not Path(base).is_file():
            base = self.catalog.resolve(base)  # a user model by name
        path = self.catalog.unique_path(params.model_name)
        job_params = dataclasses.replace(params, base_model=base, save_path=str(path), model_name=path.stem)
        inputs = {"dataset": str(folder.resolve())}
        if not self.train_executor:
            return self.job_store.submit("train", to_dict(job_params), inputs)
        from .cluster import resources
        from .slurm import submit_job

        info, _ = submit_job(self.job_store, "train", to_dict(job_params), inputs, resources(self.cluster_config),
                             cluster=self.train_executor)
        return info

    def submit_batch(self, paths: Sequence[str | os.PathLike], params: SegmentParams) -> JobInfo:
        """Segment files (all frames) in a subprocess, writing ``_pred.npy`` beside each image."""
        spec = self.catalog.resolve(params.model)
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise JobError(f"Cannot segment missing file(s): {', '.join(missing[:5])}.")
        if not paths:
            raise JobError("No files to segment.")
        inputs = {"paths": [str(Path(p).resolve()) for p in paths], "model": spec}
        if self.cluster:
            inputs.update(cluster=self.cluster, cluster_config=self.cluster_config)
        return self.job_store.submit("batch", to_dict(params), inputs)

    def job(self, job_id: str) -> JobInfo:
        """Current state of a job."""
        return self.job_store.job(job_id)

    def jobs(self) -> list[JobInfo]:
        """All jobs under ``home/jobs``, oldest first."""
        return self.job_store.jobs()

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """Events of a job with ``seq > since``."""
        return self.job_store.events(job_id, since)

    def cancel(self, job_id: str) -> JobInfo:
        """Stop a job: SIGTERM to its worker (training saves its checkpoint first)."""
        return self.job_store.cancel(job_id)

    def fetch_predictions(self, job_id: str, folder: str | os.PathLike | None = None) -> list[Path]:
        """The prediction files the batch job wrote beside its images, copied into *folder* when given."""
        written = [Path(p) for p in self.job(job_id).result.get("written", [])]
        if folder is None:
            return written
        Path(folder).mkdir(parents=True, exist_ok=True)
        copies = []
        for path in written:
            atomic_write_bytes(Path(folder) / path.name, path.read_bytes())
            copies.append(Path(folder) / path.name)
        return copies


def _describe_device() -> str:
    """A short device description from ``nvidia-smi`` if present (torch is not imported here)."""
    smi = shutil.which("nvidia-smi")
    if smi:
        import subprocess

        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return "cuda: " + out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return f"cpu ({os.cpu_count()} cores)"
