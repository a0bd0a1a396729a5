"""The Backend seam: what the UI, the CLI and the server ask of a compute backend.

``LocalBackend`` runs in this process (jobs in subprocesses); ``mcp_remote.RemoteBackend``
runs the same calls on a server over gRPC. Both take and return the dataclasses of
:mod:`mcp_core.params`, so callers never know which one they hold.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .params import BackendInfo, JobEvent, JobInfo, ModelInfo, SegmentParams, SegmentResult, TrainParams, Usage


@runtime_checkable
class Backend(Protocol):
    """A compute backend."""

    def info(self) -> BackendInfo:
        """Kind, device and versions."""

    def list_models(self) -> list[ModelInfo]:
        """Models this backend can run."""

    def add_model(self, path: str | os.PathLike) -> ModelInfo:
        """Register a model file (state dict + JSON sidecar) for use."""

    def segment(self, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
        """Segment ``(Y, X, C)`` images."""

    def submit_training(self, dataset: str | os.PathLike, params: TrainParams) -> JobInfo:
        """Start a training job on a folder of images with labels."""

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

    def usage(self) -> Usage:
        """Storage used by this backend's training files."""

    def clear_training_files(self) -> Usage:
        """Delete uploaded datasets and job working files (never models)."""


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
    """

    kind = "local"

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.models_dir = self.home / "models"
        self.jobs_dir = self.home / "jobs"

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
        """Remove finished jobs' working files; models are kept."""
        if self.jobs_dir.exists():
            shutil.rmtree(self.jobs_dir)
        return self.usage()


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
