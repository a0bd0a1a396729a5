"""Label files: ``_seg.npy`` / ``_pred.npy`` (upstream cellpose GUI compatible) and ``_masks``/``_classes`` TIFFs.

A ``_seg.npy`` is a pickled dict, as upstream cellpose writes it; it is read only through
:func:`mcp_core.labels.npyfile.read_label_dict`, which cannot run code. We write every key the upstream GUI reads (``masks``, ``outlines``, ``colors``,
``filename``, ``flows``, ``ismanual``, ``manual_changes``, ``model_path``, thresholds,
``normalize_params``, ``restore``, ``ratio``, ``diameter``, ``chan_choose``) plus our own
``classes``, ``classes_map``, ``class_names`` and ``class_colors``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..errors import LabelFileError
from ..filenames import masks_tiff_pair
from .labelset import LabelSet, mask_dtype
from .npyfile import read_label_dict

FORMAT_VERSION = 1
_NORMALIZE_PARAMS = {"lowhigh": None, "percentile": [1.0, 99.0], "normalize": True, "norm3D": True,
                     "sharpen_radius": 0, "smooth_radius": 0, "tile_norm_blocksize": 0,
                     "tile_norm_smooth3D": 1, "invert": False}


def to_seg_dict(labelset: LabelSet, image_path: str | os.PathLike | None = None) -> dict:
    """The dict written to ``_seg.npy``: upstream GUI keys plus class keys."""
    masks = labelset.masks
    n = labelset.max_id
    extra = {"confidence": dict(labelset.confidence)} if labelset.confidence else {}
    outlines = inner_outlines(masks)
    colors = _instance_colors(n)
    return {
        "masks": masks,
        "outlines": outlines,
        "colors": colors,
        "filename": str(Path(image_path).resolve()) if image_path else "",
        "flows": labelset.flows if labelset.flows is not None else [],
        "ismanual": np.ones(n, bool),
        "manual_changes": [],
        "model_path": 0,
        "flow_threshold": 0.4 if labelset.flow_threshold is None else float(labelset.flow_threshold),
        "cellprob_threshold": 0.0 if labelset.cellprob_threshold is None else float(labelset.cellprob_threshold),
        "normalize_params": dict(_NORMALIZE_PARAMS),
        "restore": None,
        "ratio": 1.0,
        "diameter": float(labelset.diameter),
        "chan_choose": [0, 0],
        "classes": labelset.classes.copy(),
        "classes_map": labelset.class_map().astype(np.uint16),
        "class_names": list(labelset.class_names),
        "class_colors": list(labelset.class_colors),
        "mcp_format": FORMAT_VERSION,
        **extra,
    }


def inner_outlines(masks: np.ndarray) -> np.ndarray:
    """Each mask's pixels with a 4-neighbour of another id, as ``skimage.segmentation.find_boundaries(masks,
    mode="inner")`` marks them, holding their id (0 elsewhere).

    Comparisons of shifted views: numpy lets other threads run meanwhile (an autosave thread then does not stall
    the app's event loop as the morphological filters did).
    """
    edge = np.zeros(masks.shape, bool)
    rows = masks[1:] != masks[:-1]
    edge[1:] |= rows
    edge[:-1] |= rows
    cols = masks[:, 1:] != masks[:, :-1]
    edge[:, 1:] |= cols
    edge[:, :-1] |= cols
    return np.where(edge, masks, 0).astype(masks.dtype)


def gui_flows(dp: np.ndarray, cellprob: np.ndarray) -> list:
    """Flows in the layout upstream cellpose's GUI reads from a ``_seg.npy`` (``cellpose.io.masks_flows_to_seg``'s).

    Parameters
    ----------
    dp
        ``(2, Y, X)`` flow field (Y, X components).
    cellprob
        ``(Y, X)`` cell probability logits.

    Returns
    -------
    list
        ``[flow picture (1, Y, X, 3) uint8, cell probability (1, Y, X) uint8, zeros (1, Y, X, 3) uint8, [],
        (dY, dX, cellprob) (3, Y, X) float32]``: the picture's hue is the flow's direction and its brightness
        the flow's strength; the probability is scaled from its 1st..99th percentile to 0..255.
    """
    from skimage.color import hsv2rgb

    dp, cellprob = np.asarray(dp, np.float32), np.asarray(cellprob, np.float32)
    if dp.ndim != 3 or dp.shape[0] != 2 or dp.shape[1:] != cellprob.shape:
        raise ValueError(f"Flows must be (2, Y, X) with a (Y, X) cell probability, got {dp.shape} and {cellprob.shape}.")
    hsv = np.stack([(np.arctan2(dp[0], dp[1]) + np.pi) / (2 * np.pi), np.ones_like(cellprob),
                    _unit_range(np.hypot(dp[0], dp[1]))], axis=-1)
    picture = (hsv2rgb(hsv) * 255).round().astype(np.uint8)
    prob = (_unit_range(cellprob) * 255).astype(np.uint8)
    return [picture[None], prob[None], np.zeros_like(picture)[None], [],
            np.concatenate([dp, cellprob[None]]).astype(np.float32)]


def _unit_range(x: np.ndarray) -> np.ndarray:
    """*x* scaled so its 1st percentile is 0 and its 99th is 1, clipped to [0, 1] (all 0 when flat)."""
    lo, hi = np.percentile(x, [1, 99])
    return np.clip((x - lo) / (hi - lo), 0, 1) if hi - lo > 1e-3 else np.zeros_like(x)


def save_labels(path: str | os.PathLike, labelset: LabelSet, image_path: str | os.PathLike | None = None, *,
                action: str | None = None, source: str | None = None) -> Path:
    """Write a label set to ``_seg.npy`` / ``_pred.npy`` atomically; a ``_seg.npy`` gets a history version.

    Parameters
    ----------
    path
        Destination (see :func:`mcp_core.filenames.label_path`).
    labelset
        What to write.
    image_path
        The image the labels belong to; stored as ``filename`` so the upstream GUI finds it.
    action, source
        For the annotation history (:mod:`mcp_core.history`): what was done ("model run with M"),
        and the model or job that produced the labels.

    Raises
    ------
    MCPError
        When the disk is full or the folder is not writable (the old file is intact).
    """
    path = Path(path)
    content = to_seg_dict(labelset, image_path)
    with atomic_write(path) as fh:  # streamed: the arrays go to the file without a copy in memory first
        np.save(fh, content, allow_pickle=True)
    if path.name.endswith("_seg.npy"):
        from ..history import record_quietly

        record_quietly(path, labelset, action, source)
    return path


def load_labels(path: str | os.PathLike) -> LabelSet:
    """Read labels from ``_seg.npy``/``_pred.npy`` (ours or upstream cellpose's) or a ``_masks`` TIFF/PNG.

    Upstream files load as masks with every class 0 ("unassigned"). For a ``_masks`` file the
    ``_classes`` file beside it, if any, is a per-pixel class map, reduced to one class per mask
    by majority vote.

    Raises
    ------
    LabelFileError
        When the file is missing, unreadable or inconsistent.
    """
    path = Path(path)
    if not path.exists():
        raise LabelFileError(f"Label file {path} does not exist.")
    if path.suffix.lower() == ".npy":
        return _load_seg(path)
    return _load_masks_image(path)


def load_labels_for(image_path: str | os.PathLike, frame: str = "", kind: str = "seg") -> LabelSet | None:
    """Labels of one frame of an image, from ``_seg.npy``/``_pred.npy`` or a ``_masks`` pair; ``None`` if none."""
    from ..filenames import label_path

    npy = label_path(image_path, frame, kind)  # type: ignore[arg-type]
    if npy.exists():
        return load_labels(npy)
    if kind == "seg" and not frame:
        pair = masks_tiff_pair(image_path)
        if pair:
            return load_labels(pair[0])
    return None


def _load_seg(path: Path) -> LabelSet:
    dat = read_label_dict(path)
    masks = np.asarray(dat["masks"]).squeeze()
    if masks.ndim != 2:
        raise LabelFileError(f"{path} holds masks of shape {masks.shape}; only 2-D label sets are supported.")
    masks = masks.astype(mask_dtype(int(masks.max(initial=0))), copy=False)
    classes = dat.get("classes")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) < int(masks.max(initial=0)) + 1:
            raise LabelFileError(f"{path}: 'classes' has {len(classes)} entries for mask ids up to {masks.max()}.")
    elif "classes_map" in dat:
        classes = majority_class(masks, np.asarray(dat["classes_map"]))
    names = list(dat.get("class_names") or ["unassigned"])
    ls = LabelSet(masks, classes, names, list(dat.get("class_colors") or []))
    flows = dat.get("flows")
    ls.flows = flows if isinstance(flows, list) and len(flows) else None
    diameter = dat.get("diameter")
    try:
        ls.diameter = float(diameter) if diameter is not None else float("nan")
    except (TypeError, ValueError):
        ls.diameter = float("nan")
    ls.flow_threshold = _float_or_none(dat.get("flow_threshold"))
    ls.cellprob_threshold = _float_or_none(dat.get("cellprob_threshold"))
    ls.confidence = confidence_scores(dat.get("confidence"))
    return ls


def confidence_scores(value: Any) -> dict[str, np.ndarray] | None:
    """The per-object scores stored under a label file's ``confidence`` key (float32, one value per mask id).

    Entries that are not 1-D numeric arrays are left out; ``None`` when *value* is not a dict.
    """
    if not isinstance(value, dict):
        return None
    return {str(k): v.astype(np.float32) for k, v in value.items()
            if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "fiu"}


def _load_masks_image(path: Path) -> LabelSet:

    try:
        masks = _read_plain(path)
    except Exception as exc:
        raise LabelFileError(f"{path} is not a readable masks image: {exc}.") from exc
    if masks.ndim != 2 or masks.dtype.kind not in "ui":
        raise LabelFileError(f"{path} must be a 2-D integer label image, got {masks.dtype} {masks.shape}.")
    classes = None
    stem = path.name[: path.name.lower().rfind("_masks")]
    for ext in (path.suffix, ".tif", ".tiff", ".png"):
        cpath = path.with_name(f"{stem}_classes{ext}")
        if cpath.exists():
            cmap = _read_plain(cpath)
            if cmap.shape != masks.shape:
                raise LabelFileError(f"{cpath} has shape {cmap.shape}, but {path.name} has {masks.shape}.")
            classes = majority_class(masks, cmap)
            break
    ls = LabelSet(masks, classes)
    flows = path.with_name(f"{stem}_flows.tif")
    if flows.exists():
        ls.flows = _read_flows_tiff(flows, masks.shape)
    return ls


def _read_flows_tiff(path: Path, shape: tuple[int, ...]) -> list:
    """A ``_flows.tif`` as cellpose's ``labels_to_flows`` writes it (``[labels,] cell probability, flow Y, flow X``),
    in the upstream GUI's layout (:func:`gui_flows`)."""
    try:
        flow = _read_plain(path)
    except Exception as exc:
        raise LabelFileError(f"{path} is not a readable flows image: {exc}.") from exc
    if flow.ndim != 3 or flow.shape[0] not in (3, 4) or flow.shape[1:] != tuple(shape):
        raise LabelFileError(f"{path} must hold ([labels,] cell probability, flow Y, flow X) planes of "
                             f"{shape[0]}x{shape[1]}, got shape {flow.shape}.")
    return gui_flows(flow[-2:], flow[-3])


def _read_plain(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path)).squeeze()
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).squeeze()


def majority_class(masks: np.ndarray, class_map: np.ndarray) -> np.ndarray:
    """Class per mask id: the most frequent non-zero value of *class_map* over the mask's pixels.

    Vectorised: one ``bincount`` over (mask id, class) pairs, no loop over masks.
    """
    masks = np.asarray(masks).ravel()
    cmap = np.asarray(class_map).ravel().astype(np.int64)
    n_ids = int(masks.max(initial=0)) + 1
    n_cls = int(cmap.max(initial=0)) + 1
    fg = (masks > 0) & (cmap > 0)
    counts = np.bincount(masks[fg].astype(np.int64) * n_cls + cmap[fg], minlength=n_ids * n_cls).reshape(n_ids, n_cls)
    out = counts.argmax(axis=1).astype(np.uint16)
    out[counts.max(axis=1) == 0] = 0
    out[0] = 0
    return out


def _float_or_none(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _instance_colors(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(64, 256, size=(n, 3)).astype(np.uint8)
