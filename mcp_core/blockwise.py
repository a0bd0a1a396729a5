"""One huge 2-D image segmented in blocks, labels written to OME-Zarr (NGFF ``labels/<name>``).

Three passes, each a set of independent tasks (in this process, or on a dask cluster):

1. Each block is segmented together with a margin of ``overlap`` pixels around it (at least two
   object diameters). An object belongs to the block that holds its centroid, so every object is
   kept exactly once, whole (it fits inside the margin); the block's own objects are saved to a
   scratch file as one small label crop.
2. Each block of the output is painted from its own objects and those of its eight neighbours
   (the only ones that can reach into it), numbered globally, and written as one zarr chunk, so
   no two tasks write the same chunk. Where two objects claim a pixel, the block's own object wins.
3. Lower resolution levels (nearest neighbour, halving) are written chunk by chunk.

Workers read only their block (TIFF through tifffile's zarr store, OME-Zarr and ``.npy`` lazily), so
their peak memory follows the block size, not the image size. The class of each object goes to the
1-D array ``labels/<name>/classes`` (index = label value); the class names are in the
``image-label`` metadata under ``multicellpose``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import ImageReadError, MCPError, ParameterError
from .io import open_image
from .io.zarr_reader import Level, open_levels
from .params import SegmentParams

#: ``segmenter(block (Y, X, C)) -> (masks, class per mask id, class names)``.
Segmenter = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Sequence[str]]]

SCRATCH = ".mcp-blocks"


@dataclass(frozen=True)
class ModelSegmenter:
    """A model as a :data:`Segmenter`; each worker process loads it once."""

    model: str
    digest: str
    params: dict

    def __call__(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, Sequence[str]]:
        from .distributed import model_lock, worker_model
        from .segment import segment

        with model_lock:
            [res] = segment(worker_model(self.model, self.digest), [block], SegmentParams(**self.params))
        return res.masks, res.classes, res.class_names


@contextlib.contextmanager
def open_region_source(path: str | os.PathLike) -> Iterator[Level]:
    """Full-resolution pixels of a 2-D image, read region by region (``Level.read``).

    OME-Zarr and TIFF (through tifffile's zarr store) are read lazily, ``.npy`` memory-mapped; other
    formats are read whole through :func:`mcp_core.io.open_image`.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".zarr"):
        yield open_levels(path)[0]
    elif name.endswith((".tif", ".tiff", ".btf", ".tf8")):
        import tifffile
        import zarr

        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise ImageReadError(f"{path} is not a readable TIFF file: {exc}.") from exc
        with tif:
            series = tif.series[0]
            axes = series.axes.replace("S", "C")
            with series.aszarr(level=0) as store:
                yield Level(zarr.open_array(store, mode="r"), axes)
    elif name.endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise ImageReadError(f"{path} is not a readable .npy array: {exc}.") from exc
        yield Level(arr, "YXC" if arr.ndim == 3 else "YX")
    else:
        from .io import read_frame

        yield Level(read_frame(path), "YXC")


def block_boxes(shape: tuple[int, int], block: int) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the blocks tiling *shape*, row by row."""
    return [(y, min(y + block, shape[0]), x, min(x + block, shape[1]))
            for y in range(0, shape[0], block) for x in range(0, shape[1], block)]


def segment_block(image: str, box: tuple[int, int, int, int], overlap: int, segmenter: Segmenter,
                  scratch: str) -> dict[str, Any]:
    """Pass 1: segment one block with its margin and save the objects it owns to *scratch*.

    Returns
    -------
    dict
        ``count`` (objects owned), ``classes`` (their classes, in label order), ``class_names``,
        ``cut`` (owned objects that touch the margin's outer edge: larger than the overlap).
    """
    y0, y1, x0, x1 = box
    with open_region_source(image) as src:
        h, w = src.shape_yx
        ey0, ey1, ex0, ex1 = max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap), min(w, x1 + overlap)
        pixels = src.read(ey0, ey1, ex0, ex1)
    masks, classes, names = segmenter(pixels)
    masks = np.asarray(masks)
    n = int(masks.max(initial=0))
    flat = masks.ravel()
    area = np.bincount(flat, minlength=n + 1)
    rows = np.bincount(flat, weights=np.repeat(np.arange(ey0, ey1, dtype=np.float64), ex1 - ex0), minlength=n + 1)
    cols = np.bincount(flat, weights=np.tile(np.arange(ex0, ex1, dtype=np.float64), ey1 - ey0), minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = rows / area, cols / area
    owned = (area > 0) & (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)
    owned[0] = False
    ids = np.flatnonzero(owned)
    remap = np.zeros(n + 1, np.uint32)
    remap[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    local = remap[masks]
    edges = [local[0] if ey0 > 0 else (), local[-1] if ey1 < h else (), local[:, 0] if ex0 > 0 else (),
             local[:, -1] if ex1 < w else ()]
    cut = len(np.unique(np.concatenate([np.asarray(e, np.uint32) for e in edges]))) - 1 if any(len(e) for e in edges) else 0
    ys, xs = np.nonzero(local)
    origin = (ey0 + int(ys.min()), ex0 + int(xs.min())) if len(ys) else (ey0, ex0)
    crop = local[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else local[:0, :0]
    with atomic_write(scratch) as fh:
        np.savez_compressed(fh, labels=crop, origin=np.asarray(origin, np.int64))
    cls = np.asarray(classes)
    return {"count": len(ids), "classes": cls[ids].astype(np.uint16) if len(cls) > n else np.zeros(len(ids), np.uint16),
            "class_names": list(names), "cut": max(cut, 0)}


def write_block(output: str, name: str, box: tuple[int, int, int, int], sources: list[tuple[str, int]]) -> int:
    """Pass 2: paint one output block from its own and its neighbours' objects and write it (one chunk).

    Parameters
    ----------
    sources
        ``(scratch file, first label value - 1)`` of the block itself first, then its neighbours.

    Returns
    -------
    int
        Labelled pixels written.
    """
    import zarr

    y0, y1, x0, x1 = box
    out = np.zeros((y1 - y0, x1 - x0), np.uint32)
    for scratch, offset in sources:
        with np.load(scratch, allow_pickle=False) as z:
            labels, (oy, ox) = z["labels"], z["origin"]
        ty0, ty1 = max(y0, oy), min(y1, oy + labels.shape[0])
        tx0, tx1 = max(x0, ox), min(x1, ox + labels.shape[1])
        if ty0 >= ty1 or tx0 >= tx1:
            continue
        sub = labels[ty0 - oy:ty1 - oy, tx0 - ox:tx1 - ox]
        tgt = out[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
        put = (sub > 0) & (tgt == 0)
        tgt[put] = sub[put] + offset
    zarr.open_array(str(Path(output) / "labels" / name / "0"), mode="r+")[y0:y1, x0:x1] = out
    return int(np.count_nonzero(out))


def downsample_block(output: str, name: str, level: int, box: tuple[int, int, int, int]) -> None:
    """Pass 3: one chunk of resolution *level* from every second pixel of the level above."""
    import zarr

    group = Path(output) / "labels" / name
    y0, y1, x0, x1 = box
    above = zarr.open_array(str(group / str(level - 1)), mode="r")[2 * y0:2 * y1:2, 2 * x0:2 * x1:2]
    zarr.open_array(str(group / str(level)), mode="r+")[y0:y1, x0:x1] = above


def _run(client, fn: Callable, calls: list[tuple], stage: str, emit: Callable[[str, dict], None]) -> list:
    """Run ``fn(*args)`` for every call, here or on *client*; results in call order."""
    t0 = time.time()
    results: list = [None] * len(calls)

    def report(done: int) -> None:
        elapsed = time.time() - t0
        emit("progress", {"stage": stage, "done": done, "total": len(calls), "fraction": done / max(len(calls), 1),
                          "elapsed": elapsed, "eta": elapsed / max(done, 1) * (len(calls) - done),
                          "message": f"{stage}: {done}/{len(calls)} block(s)"})

    if client is None:
        for i, args in enumerate(calls):
            results[i] = fn(*args)
            report(i + 1)
        return results
    from distributed import as_completed

    futures = [client.submit(fn, *args, pure=False) for args in calls]
    index = {f.key: i for i, f in enumerate(futures)}
    for done, future in enumerate(as_completed(futures), 1):
        if future.status == "error":
            client.cancel(futures)
            exc = future.exception()
            raise MCPError(f"A block failed during {stage}: {exc}") from exc
        results[index[future.key]] = future.result()
        report(done)
    return results


def _model_segmenter(model: str | os.PathLike, params: SegmentParams) -> tuple[ModelSegmenter, float]:
    """The segmenter of a model file and the object diameter it segments at (from the sidecar)."""
    from .catalog import sidecar_path
    from .distributed import model_digest

    diameter = params.diameter
    if not diameter and sidecar_path(model).is_file():
        with contextlib.suppress(OSError, ValueError, TypeError):
            diameter = float(json.loads(sidecar_path(model).read_text("utf-8")).get("diameter") or 0)
    return ModelSegmenter(str(model), model_digest(model), asdict(params)), diameter or 30.0


def segment_blockwise(image: str | os.PathLike, output: str | os.PathLike, *, model: str | os.PathLike | None = None,
                      params: SegmentParams | None = None, segmenter: Segmenter | None = None, block: int = 512,
                      overlap: int | None = None, name: str = "cells", client=None,
                      progress: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Segment a large 2-D image block by block and write its labels to ``output/labels/<name>``.

    Parameters
    ----------
    image
        OME-Zarr, TIFF (tiled or pyramidal: full resolution is used) or ``.npy``; other formats are read whole.
    output
        An OME-Zarr folder (the image's own, or a new one); existing labels named *name* are replaced.
    model, params
        The model file (or pretrained name) and segmentation parameters, unless *segmenter* is given.
    segmenter
        Any picklable :data:`Segmenter` instead of a model.
    block
        Block (and zarr chunk) size in pixels.
    overlap
        Margin around each block; default two object diameters (the model's, or ``params.diameter``).
    client
        A ``distributed.Client`` to run the blocks on; in this process by default.
    progress
        Called with ``("progress", {stage, done, total, fraction, elapsed, eta, message})``.

    Returns
    -------
    dict
        ``objects``, ``blocks``, ``shape``, ``levels``, ``class_names``, ``cut`` (objects larger than the
        overlap, possibly clipped), ``elapsed``.

    Raises
    ------
    ParameterError
        Without a model or segmenter, an overlap under two diameters or over the block size.
    ImageReadError
        When the image cannot be read.
    """
    import zarr
    from ome_zarr.writer import add_metadata, get_metadata, write_label_metadata, write_multiscales_metadata

    emit = progress or (lambda kind, data: None)
    diameter = 0.0
    if segmenter is None:
        if model is None:
            raise ParameterError("Blockwise segmentation needs a model or a segmenter.")
        segmenter, diameter = _model_segmenter(model, params or SegmentParams())
    overlap = int(math.ceil(2 * diameter)) if overlap is None else int(overlap)
    if overlap < 2 * diameter:
        raise ParameterError(f"The overlap ({overlap} px) must be at least two object diameters ({2 * diameter:.0f} px).")
    if not 0 <= overlap <= block:
        raise ParameterError(f"The overlap ({overlap} px) must be between 0 and the block size ({block} px).")
    t0 = time.time()
    image, output = str(image), Path(output)
    with open_image(image) as src:
        if len(src.frames) > 1:
            raise ParameterError(f"{image} has {len(src.frames)} frames; blockwise segmentation takes one 2-D image.")
    with open_region_source(image) as src:
        shape = src.shape_yx
    boxes = block_boxes(shape, block)
    scratch = output / SCRATCH / name
    scratch.mkdir(parents=True, exist_ok=True)
    files = [str(scratch / f"{i}.npz") for i in range(len(boxes))]
    owned = _run(client, segment_block, [(image, box, overlap, segmenter, f) for box, f in zip(boxes, files)],
                 "segmenting", emit)

    counts = np.array([o["count"] for o in owned], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    classes = np.concatenate([np.zeros(1, np.uint16), *(o["classes"] for o in owned)])
    names = next((o["class_names"] for o in owned if o["count"]), owned[0]["class_names"] if owned else [])
    root = zarr.open_group(str(output), mode="a")
    label_group = root.require_group(f"labels/{name}")
    for key in list(label_group.keys()):
        del label_group[key]
    levels, size = [], shape
    while True:
        arr = label_group.create_array(str(len(levels)), shape=size, chunks=(block, block), dtype="uint32", fill_value=0)
        levels.append(arr.shape)
        if max(size) <= block:
            break
        size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    label_group.create_array("classes", data=classes, chunks=(max(len(classes), 1),))
    nby, nbx = math.ceil(shape[0] / block), math.ceil(shape[1] / block)
    calls = []
    for i, box in enumerate(boxes):
        by, bx = divmod(i, nbx)
        near = [(by + dy) * nbx + bx + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                if 0 <= by + dy < nby and 0 <= bx + dx < nbx and (dy or dx)]
        calls.append((str(output), name, box, [(files[j], int(offsets[j])) for j in [i, *near] if counts[j]]))
    _run(client, write_block, calls, "writing", emit)
    for level in range(1, len(levels)):
        _run(client, downsample_block, [(str(output), name, level, box) for box in block_boxes(levels[level], block)],
             f"level {level}", emit)

    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [2.0 ** k, 2.0 ** k]}]}
                for k in range(len(levels))]
    write_multiscales_metadata(label_group, datasets, axes=axes, name=name)
    labels_group = root["labels"]
    existing = get_metadata(labels_group).get("labels", [])
    if name in existing:  # labels of this name rewritten: listed once
        add_metadata(labels_group, {"labels": [n for n in existing if n != name]})
    write_label_metadata(labels_group, name, source={"image": "../../"},
                         multicellpose={"class_names": list(names), "classes": "classes"})
    shutil.rmtree(output / SCRATCH, ignore_errors=True)
    return {"objects": int(counts.sum()), "blocks": len(boxes), "shape": shape, "levels": levels,
            "class_names": list(names), "cut": int(sum(o["cut"] for o in owned)), "elapsed": time.time() - t0}
