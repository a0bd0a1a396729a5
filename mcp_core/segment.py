"""Inference: masks, per-mask classes, class map and (on request) flows for a list of images.

Tiles of all images go through the network together in batches of ``batch_size`` on a GPU (so a
folder of small images keeps the device busy; the CPU takes :data:`CPU_TILES_PER_PASS` at a time),
each image's tiles are averaged with cellpose's ``average_tiles`` as soon as they are all back, and
a worker thread finishes the image while the network goes on: masks and their flow errors come from
cellpose's dynamics (:func:`mcp_core.masks.masks_and_flow_errors`), each mask's class is the majority vote
of the per-pixel class argmax over its pixels (:func:`mcp_core.labels.majority_class`, one
``bincount``) and each mask's confidence scores come from :func:`mcp_core.confidence.object_confidence`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from cellpose import transforms

from .confidence import object_confidence
from .errors import MCPError, ParameterError
from .io import image_files, open_image
from .labels import majority_class
from .masks import masks_and_flow_errors
from .model import N_SEG_CHANNELS, MultiClassModel, open_model
from .params import SegmentParams, SegmentResult
from .predictions import save_prediction
from .preprocess import prepare_image

#: Masks larger than this fraction of the image are dropped (cellpose's default).
MAX_SIZE_FRACTION = 0.4
#: Images whose network outputs may wait for the finishing worker while the network goes on.
IN_FLIGHT = 2
#: Tiles per forward pass on the CPU (at most ``batch_size``): several tiles' attention maps outgrow
#: the caches, so a pass of 8 tiles costs more per tile (e.g. 224 vs 165 ms of CPU for the tiny ViT on
#: 256-pixel tiles, one thread, 2 cores with 4 MiB L2 each). A tile's outputs do not depend on the
#: other tiles of its pass, though the pass's size may change the kernels' rounding (not at 256 pixels here).
CPU_TILES_PER_PASS = 1
#: Torch threads of the worker that finishes images (per thread: the network keeps its own), so
#: that cellpose's dynamics do not compete with the network for all cores.
FINISH_THREADS = 1


def segment(model: MultiClassModel | str | os.PathLike, images: Sequence[np.ndarray], params: SegmentParams | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[SegmentResult]:
    """Segment ``(Y, X, C)`` images.

    Parameters
    ----------
    model
        A loaded model, or what :func:`mcp_core.model.open_model` accepts (a name or a path).
    images
        ``(Y, X)`` or ``(Y, X, C)`` arrays of any size.
    params
        Thresholds, diameter, tiling and batching; ``params.model`` is ignored here.
    progress
        Called with ``(images done, total)``.

    Returns
    -------
    list of SegmentResult
        One per image, in order.

    Raises
    ------
    ParameterError
        Bad channels or percentiles, or a tile size the model was not made for.
    """
    params = params or SegmentParams()
    model = model if isinstance(model, MultiClassModel) else open_model(model)
    channels = params.channels if params.channels is not None else model.meta.get("channels")
    normalize = tuple(params.normalize)
    return _segment(model, images, lambda img: prepare_image(img, channels, normalize), params, progress)


def _rescale(model: MultiClassModel, diameter: float) -> tuple[float, float]:
    """``(resize factor, diameter used)``: objects of *diameter* pixels are brought to the model's scale."""
    d = diameter if diameter > 0 else model.diameter
    return model.diam_mean / d, d


def segment_prepared(model: MultiClassModel, images: Sequence[np.ndarray], params: SegmentParams,
                     progress: Callable[[int, int], None] | None = None) -> list[SegmentResult]:
    """:func:`segment` for images already made ``(Y, X, 3)`` by :func:`mcp_core.preprocess.prepare_image`."""
    return _segment(model, images, lambda img: img, params, progress)


def _segment(model: MultiClassModel, images: Sequence[np.ndarray], prepare: Callable[[np.ndarray], np.ndarray],
             params: SegmentParams, progress: Callable[[int, int], None] | None) -> list[SegmentResult]:
    """Segment *images*, each prepared by *prepare* only when its tiles are made (not all held at once)."""
    bsize = model.bsize if params.bsize is None else int(params.bsize)
    if bsize != model.bsize:
        raise ParameterError(f"This model works on {model.bsize}-pixel tiles; set bsize to {model.bsize} (got {bsize}).")
    rsz, diameter = _rescale(model, params.diameter)
    net, device = model.net, model.device
    net.eval()
    per_pass = params.batch_size if device.type != "cpu" else min(params.batch_size, CPU_TILES_PER_PASS)
    k = model.n_classes
    results: list[SegmentResult | None] = [None] * len(images)
    pending: dict[int, dict] = {}

    def tiles() -> Iterator[tuple[int, int, np.ndarray]]:
        for i, img in enumerate(images):
            img = prepare(img)
            shape = img.shape[:2]
            if rsz != 1.0:
                img = transforms.resize_image(img, rsz=rsz)
            ly, lx = img.shape[:2]
            pads = transforms.get_pad_yx(ly, lx, min_size=(bsize, bsize))
            padded = np.pad(img.transpose(2, 0, 1), ((0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
            tiled, ysub, xsub, lyt, lxt = transforms.make_tiles(padded, bsize=bsize, augment=params.augment,
                                                                tile_overlap=params.tile_overlap)
            grid = tiled.shape[:2]
            tiled = tiled.reshape(-1, *tiled.shape[2:])
            pending[i] = {"shape": shape, "scaled": (ly, lx), "pads": pads, "ysub": ysub, "xsub": xsub,
                          "size": (lyt, lxt), "grid": grid, "out": None, "left": len(tiled)}
            for t in range(len(tiled)):
                yield i, t, tiled[t]

    batch: list[tuple[int, int, np.ndarray]] = []
    stream = tiles()
    finishing: deque[tuple[int, Future]] = deque()
    done = 0

    def collect(keep: int) -> None:
        """Take the finished images in order, waiting while more than *keep* are in the worker's hands."""
        nonlocal done
        while finishing and (len(finishing) > keep or finishing[0][1].done()):
            i, future = finishing.popleft()
            results[i] = future.result()
            done += 1
            if progress:
                progress(done, len(images))

    # One worker finishes an image (cellpose's dynamics, class vote, confidence) while the network runs
    # on the next tiles; at most IN_FLIGHT images wait for it, so outputs do not pile up.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-finish", initializer=torch.set_num_threads,
                            initargs=(FINISH_THREADS,)) as worker:
        while True:
            item = next(stream, None)
            if item is not None:
                batch.append(item)
                if len(batch) < per_pass:
                    continue
            if batch:
                out = _forward(net, np.stack([b[2] for b in batch]), device)
                for (i, t, _), y in zip(batch, out):
                    entry = pending[i]
                    if entry["out"] is None:
                        entry["out"] = np.zeros((entry["left"], *y.shape), np.float32)
                    entry["out"][t] = y
                    entry["left"] -= 1
                    if entry["left"] == 0:
                        finishing.append((i, worker.submit(_finish, model, pending.pop(i), params, rsz, diameter, k)))
                collect(IN_FLIGHT)
                batch = []
            if item is None:
                break
        collect(0)
    return results  # type: ignore[return-value]


def _forward(net: torch.nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        xt = torch.from_numpy(x).to(device)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = net(xt)[0]
        else:
            y = net(xt)[0]
        return y.float().cpu().numpy()


def _finish(model: MultiClassModel, entry: dict, params: SegmentParams, rsz: float, diameter: float, k: int
            ) -> SegmentResult:
    y = entry["out"]
    if params.augment:
        # cellpose's unaugment_tiles expects flow Y, flow X first: move them there and back.
        order = [k, k + 1, k + 2, *range(k)]
        back = np.argsort(order)
        y = y.reshape(*entry["grid"], *y.shape[1:])[:, :, order]
        y = transforms.unaugment_tiles(y)[:, :, back].reshape(-1, *y.shape[2:])
    yf = transforms.average_tiles(y, entry["ysub"], entry["xsub"], *entry["size"])
    p = entry["pads"]
    ly, lx = entry["scaled"]
    yf = yf[:, p[0]:p[0] + ly, p[2]:p[2] + lx].transpose(1, 2, 0)
    if rsz != 1.0:
        yf = transforms.resize_image(yf, *entry["shape"])
    yf = np.ascontiguousarray(yf.transpose(2, 0, 1))
    dp, cellprob = yf[-N_SEG_CHANNELS:-1], yf[-1]
    niter = params.niter or int(200 / rsz)
    with warnings.catch_warnings():  # torch's notice about sparse invariant checks, raised inside cellpose
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        masks, flow_error = masks_and_flow_errors(dp, cellprob, niter, params.cellprob_threshold, params.flow_threshold,
                                                  params.min_size, MAX_SIZE_FRACTION, model.device)
    if k > 1:
        logits = yf[:k]
        class_map = logits.argmax(axis=0).astype(np.uint16)
        foreground = (logits[1:].argmax(axis=0) + 1).astype(np.uint16)
        classes = majority_class(masks, np.where(masks > 0, foreground, 0))
        names, colors = list(model.class_names), list(model.class_colors)
    else:
        class_map = np.zeros(masks.shape, np.uint16)
        classes = np.zeros(int(masks.max(initial=0)) + 1, np.uint16)
        names, colors = ["unassigned"], []
    confidence = object_confidence(masks, cellprob, class_logits=yf[:k] if k > 2 else None, flow_error=flow_error)
    return SegmentResult(
        masks=masks, classes=classes, class_names=names, class_map=class_map,
        flows=dp if params.return_flows else None, cellprob=cellprob if params.return_flows else None,
        diameter=float(diameter), class_colors=colors, confidence=confidence,
    )


def segment_files(model: MultiClassModel | str | os.PathLike, paths: Sequence[str | os.PathLike], params: SegmentParams,
                  folder: str | os.PathLike | None = None, progress: Callable[[str, dict], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, chunk: int = 8) -> dict:
    """Segment every frame of image files (and folders) and write ``_pred.npy`` files.

    Frames go to :func:`segment` *chunk* at a time, so tiles of several frames share batches.
    A file that cannot be read is skipped and reported; the rest go on.

    Parameters
    ----------
    folder
        Where predictions go; beside each image by default.
    progress
        Called with ``(kind, data)``: ``"progress"`` (done, total, fraction, elapsed, eta),
        ``"artifact"`` (each file written), ``"log"`` (skipped files).
    should_stop
        Polled between chunks; ``True`` stops (files written so far stay).

    Returns
    -------
    dict
        ``written`` (paths), ``skipped`` (``{path, error}``), ``frames`` done, ``cancelled``.
    """
    emit = progress or (lambda kind, data: None)
    stop = should_stop or (lambda: False)
    model = model if isinstance(model, MultiClassModel) else open_model(model)
    todo: list[tuple[Path, str]] = []
    skipped: list[dict] = []
    for path in image_files(paths):
        try:
            with open_image(path) as src:
                todo.extend((path, f) for f in src.frames)
        except MCPError as exc:
            skipped.append({"path": str(path), "error": str(exc)})
            emit("log", {"message": f"Skipped {path}: {exc}"})
    written: list[str] = []
    t0 = time.time()
    done, cancelled = 0, False
    for start in range(0, len(todo), chunk):
        if stop():
            cancelled = True
            break
        items, images = [], []
        for path, frame in todo[start:start + chunk]:
            where = f"{path} {frame}" if frame else str(path)
            try:
                with open_image(path) as src:
                    images.append(src.read(frame))
                items.append((path, frame))
            except MCPError as exc:
                skipped.append({"path": str(path), "frame": frame, "error": str(exc)})
                emit("log", {"message": f"Skipped {where}: {exc}"})
                continue
            if images[-1].dtype.kind == "f" and not np.isfinite(images[-1]).any():
                emit("log", {"message": f"Warning: {where} is all NaN/inf; it gives no masks."})
        for (path, frame), result in zip(items, segment(model, images, params)):
            out = save_prediction(result, path, frame, folder, params)
            written.append(str(out))
            emit("artifact", {"path": str(out), "kind": "prediction", "image": str(path), "frame": frame,
                              "count": int(len(np.unique(result.masks)) - 1)})
        done = min(start + chunk, len(todo))
        elapsed = time.time() - t0
        emit("progress", {"done": done, "total": len(todo), "fraction": done / max(len(todo), 1), "elapsed": elapsed,
                          "eta": elapsed / done * (len(todo) - done), "message": f"{done}/{len(todo)} frame(s)"})
    return {"written": written, "skipped": skipped, "frames": done, "cancelled": cancelled}
