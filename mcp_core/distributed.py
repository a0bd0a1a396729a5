"""Segmenting many images on a dask cluster: one task per frame, restartable, fault tolerant.

Each worker process loads the model once (a per-process cache keyed by the model file's digest)
and writes the predictions it makes itself, atomically, beside a small record
``.<prediction name>.run.json`` naming the run key (model digest + parameters) and the image's size
and modification time. A rerun with the same key skips frames whose prediction and record are
there, so an interrupted run goes on where it stopped. A worker that dies has its tasks rerun
elsewhere by the scheduler; a frame that cannot be read fails alone, with its reason.

The client side needs neither torch nor cellpose; outputs must be on a file system the workers share.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .digest import sha256_of
from .errors import MCPError
from .filenames import label_path
from .io import open_image
from .params import SegmentParams

#: Parameters that do not change a prediction (left out of the run key).
_NEUTRAL = ("model", "batch_size")

_models: dict[tuple[str, str], Any] = {}
_loads: dict[tuple[str, str], int] = {}
model_lock = threading.Lock()


@dataclass(frozen=True)
class FrameTask:
    """One frame to segment, and where its prediction and record go."""

    image: str
    frame: str
    output: str
    record: str
    model: str
    digest: str
    key: str
    params: dict


def model_digest(model: str | os.PathLike) -> str:
    """Digest of a model file, or of cellpose's cached weights for ``cpsam``/``cpsam_v2``."""
    from .catalog import PRETRAINED, pretrained_path

    name = str(model)
    return sha256_of(pretrained_path(name) if name in PRETRAINED else name)


def run_key(digest: str, params: SegmentParams) -> str:
    """What makes two predictions the same: the model's digest and every parameter that shapes the output."""
    fields = {k: v for k, v in asdict(params).items() if k not in _NEUTRAL}
    return hashlib.sha256(json.dumps({"model": digest, "params": fields}, sort_keys=True).encode()).hexdigest()


def record_path(prediction: str | os.PathLike) -> Path:
    """The run record beside a prediction file."""
    p = Path(prediction)
    return p.with_name(f".{p.name}.run.json")


def _stamp(image: str | os.PathLike) -> dict[str, int]:
    st = os.stat(image)
    return {"image_size": st.st_size, "image_mtime_ns": st.st_mtime_ns}


def is_complete(task: FrameTask) -> bool:
    """Whether *task*'s prediction exists and was made with the same key from the same image."""
    try:
        record = json.loads(Path(task.record).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and record.get("key") == task.key and Path(task.output).exists()
            and all(record.get(k) == v for k, v in _stamp(task.image).items()))


def worker_model(model: str, digest: str):
    """The model of this process, loaded on first use (one model kept per process)."""
    if (model, digest) not in _models:
        from .model import open_model

        _models.clear()
        _models[(model, digest)] = open_model(model)
        _loads[(model, digest)] = _loads.get((model, digest), 0) + 1
    return _models[(model, digest)]


def segment_frame(task: FrameTask) -> dict[str, Any]:
    """Segment one frame and write its prediction and run record (runs on a worker).

    Returns
    -------
    dict
        ``image``, ``frame``, ``output``, ``count`` (masks), ``pid`` and ``loads`` (times this process has
        loaded this model).

    Raises
    ------
    MCPError
        When the image cannot be read (or the model loaded).
    """
    from .predictions import save_prediction
    from .segment import segment

    with open_image(task.image) as src:
        image = src.read(task.frame)
    params = SegmentParams(**task.params)
    with model_lock:  # one frame at a time per process, whatever the worker's thread count
        model = worker_model(task.model, task.digest)
        [result] = segment(model, [image], params)
        loads = _loads[(task.model, task.digest)]
    out = save_prediction(result, task.image, task.frame, Path(task.output).parent, params)
    count = int(result.masks.max(initial=0))
    atomic_write_text(task.record, json.dumps({"key": task.key, "model": task.model, "model_sha256": task.digest,
                                               "image": task.image, "frame": task.frame, "count": count,
                                               "time": time.time(), **_stamp(task.image)}))
    return {"image": task.image, "frame": task.frame, "output": str(out), "count": count, "pid": os.getpid(),
            "loads": loads}


def plan(model: str | os.PathLike, paths: Sequence[str | os.PathLike], params: SegmentParams,
         folder: str | os.PathLike | None = None) -> tuple[list[FrameTask], list[FrameTask], list[dict]]:
    """Frames of *paths* as tasks: ``(to do, already complete, unreadable files)``.

    Parameters
    ----------
    model
        A model file or a pretrained name.
    folder
        Where predictions go; beside each image by default.
    """
    from .io import image_files

    digest = model_digest(model)
    key = run_key(digest, params)
    todo: list[FrameTask] = []
    complete: list[FrameTask] = []
    failed: list[dict] = []
    fields = asdict(params)
    for path in image_files(paths):
        try:
            with open_image(path) as src:
                frames = list(src.frames)
        except MCPError as exc:
            failed.append({"image": str(path), "frame": "", "error": str(exc)})
            continue
        for frame in frames:
            out = label_path(path, frame, "pred")
            if folder is not None:
                out = Path(folder) / out.name
            task = FrameTask(str(path), frame, str(out), str(record_path(out)), str(model), digest, key, fields)
            (complete if is_complete(task) else todo).append(task)
    return todo, complete, failed


def segment_on_client(client, model: str | os.PathLike, paths: Sequence[str | os.PathLike],
                      params: SegmentParams, folder: str | os.PathLike | None = None,
                      progress: Callable[[str, dict], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Segment every frame of *paths* on the cluster of a ``distributed.Client``.

    Parameters
    ----------
    client
        A connected ``distributed.Client`` (see :func:`mcp_core.cluster.open_client`).
    model
        A model file (or pretrained name) every worker can read.
    folder
        Where predictions go (shared with the workers); beside each image by default.
    progress
        Called with ``(kind, data)``: ``"progress"`` (done, total, fraction, elapsed, eta, message),
        ``"artifact"`` (each prediction), ``"log"`` (skipped and failed frames).
    should_stop
        Polled as results come in; ``True`` cancels the frames not yet done.

    Returns
    -------
    dict
        ``done`` (results of :func:`segment_frame`), ``skipped`` (frames already complete),
        ``failed`` (``{image, frame, error}``), ``cancelled``, ``elapsed``.
    """
    from distributed import as_completed

    emit = progress or (lambda kind, data: None)
    stop = should_stop or (lambda: False)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    todo, complete, failed = plan(model, paths, params, folder)
    for f in failed:
        emit("log", {"message": f"Failed {f['image']}: {f['error']}"})
    if complete:
        emit("log", {"message": f"Skipping {len(complete)} frame(s) already segmented with this model and parameters."})
    t0 = time.time()
    futures = [client.submit(segment_frame, task, pure=False) for task in todo]
    tasks = {f.key: t for f, t in zip(futures, todo)}
    done: list[dict] = []
    cancelled, finished = False, 0
    for future in as_completed(futures):
        task = tasks[future.key]
        if future.status == "finished":
            result = future.result()
            done.append(result)
            emit("artifact", {"path": result["output"], "kind": "prediction", "image": task.image, "frame": task.frame,
                              "count": result["count"]})
        elif future.status == "error":
            error = _reason(future.exception())
            failed.append({"image": task.image, "frame": task.frame, "error": error})
            emit("log", {"message": f"Failed {task.image} {task.frame}: {error}".replace("  ", " ")})
        finished += 1
        elapsed = time.time() - t0
        emit("progress", {"done": finished, "total": len(todo), "fraction": finished / max(len(todo), 1),
                          "elapsed": elapsed, "eta": elapsed / max(finished, 1) * (len(todo) - finished),
                          "message": f"{finished}/{len(todo)} frame(s)"})
        if stop():
            cancelled = True
            client.cancel(futures)
            break
    return {"done": done, "skipped": [{"image": t.image, "frame": t.frame, "output": t.output} for t in complete],
            "failed": failed, "cancelled": cancelled, "elapsed": time.time() - t0}


def _reason(exc: BaseException | None) -> str:
    """A failure as one sentence (a worker that kept dying is named as such)."""
    if exc is None:
        return "unknown error"
    if type(exc).__name__ == "KilledWorker":
        return "the worker processes running it died repeatedly (out of memory?)"
    return str(exc) if isinstance(exc, MCPError) else f"{type(exc).__name__}: {exc}"


def segment_folder(model: str | os.PathLike, paths: Sequence[str | os.PathLike], params: SegmentParams,
                   folder: str | os.PathLike | None = None, cluster: str = "local",
                   config: Any = None, progress: Callable[[str, dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """:func:`segment_on_client` on a cluster made for the run (see :func:`mcp_core.cluster.open_client`).

    Parameters
    ----------
    cluster
        ``local``, ``local:N``, ``slurm`` or a scheduler address.
    config
        For ``slurm``: a :class:`~mcp_core.cluster.ClusterConfig` or its config file.
    """
    from .cluster import open_client

    with open_client(cluster, config) as client:
        return segment_on_client(client, model, paths, params, folder, progress, should_stop)


def batch_result(summary: dict[str, Any]) -> dict[str, Any]:
    """A cluster run's summary in the shape of :func:`mcp_core.segment.segment_files`' result (for batch jobs).

    Predictions skipped because they were complete count as written; failed frames are the skipped ones.
    """
    written = [d["output"] for d in summary["done"]] + [s["output"] for s in summary["skipped"]]
    return {"written": written, "frames": len(written), "cancelled": summary["cancelled"],
            "skipped": [{"path": f["image"], "frame": f["frame"], "error": f["error"]} for f in summary["failed"]]}
