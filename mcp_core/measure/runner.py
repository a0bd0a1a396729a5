"""Running plugins over frames, images and folders into one tidy table.

>>> from mcp_core.measure import measure
>>> df = measure("project/", ["basic", "clusters"], {"basic": {"annulus_gap": 3}}, source="seg")

One row per object: ``image``, ``frame``, ``mask_id``, ``class_id``, ``class_name``, then each
plugin's columns. A bad image (no labels, labels of another shape, unreadable, a plugin that
raises) is reported (``df.attrs["skipped"]``, the log) and skipped; the rest are measured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..errors import ImageReadError, MCPError, ParameterError
from .contract import check_declaration, frame_output, parse_params, review_output, series_output, table_output
from .plugin import ID_COLUMNS, FrameData, Plugin, PluginError
from .registry import get_plugin

log = logging.getLogger(__name__)

LabelSource = Literal["pred", "seg"]
SeriesMode = Literal["file", "folder"]
#: ``progress(done, total, message)``: images done out of the total, and what happens now.
ProgressFn = Callable[[int, int, str], None]
FRAME_COLUMNS = ("image", "frame", "height", "width", "pixel_size_y", "pixel_size_x", "n_objects", "labels_file")


@dataclass
class MeasureResult:
    """Everything a measurement run produced.

    Attributes
    ----------
    objects
        One row per object (per frame): the id columns, then each plugin's columns.
    tables
        Tables of ``"table"``-scope plugins (e.g. the per-class summary), by plugin name.
    frames
        One row per measured frame: size, pixel size, object count, the label file used.
    skipped
        One sentence per image, frame or plugin run that was reported and skipped.
    reviews
        Review label images ``{(image, frame, plugin): (Y, X) labels}`` when asked for.
    source
        Which labels were measured: ``"pred"`` (``_pred.npy``) or ``"seg"`` (``_seg.npy``).
    cancelled
        The run stopped early because ``cancel()`` said so.
    """

    objects: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    frames: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FRAME_COLUMNS)))
    skipped: list[str] = field(default_factory=list)
    reviews: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    source: str = "pred"
    cancelled: bool = False


def resolve_plugins(plugins: Iterable[str | Plugin] | str | Plugin) -> list[Plugin]:
    """Plugin objects from names (installed plugins) or plugin objects; rejects duplicates and column clashes.

    Raises
    ------
    PluginError
        An unknown name, a plugin given twice, or two plugins declaring the same column.
    """
    if isinstance(plugins, (str, Plugin)):
        plugins = [plugins]
    out = [p if isinstance(p, Plugin) else get_plugin(p) for p in plugins]
    for p in out:
        unusable = check_declaration(p, strict=False)
        if unusable:
            raise PluginError(f"Plugin {p.name!r} is not usable: {'; '.join(unusable)}.")
    if not out:
        raise PluginError("No plugin chosen; name at least one (see 'multicellpose plugins list').")
    names = [p.name for p in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PluginError(f"Plugin(s) {', '.join(twice)} given more than once.")
    owner: dict[str, str] = {}
    for p in out:
        if p.scope == "table":
            continue
        for col in p.columns:
            if col in owner:
                raise PluginError(f"Plugins {owner[col]!r} and {p.name!r} both return column {col!r}; run them separately.")
            owner[col] = p.name
    return out


def resolve_params(plugins: Sequence[Plugin], params: Mapping[str, Any] | None) -> dict[str, BaseModel]:
    """Validated parameters per plugin name from ``{plugin name: {parameter: value}}``.

    Raises
    ------
    ParameterError
        Parameters for a plugin that is not being run, or an invalid parameter.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - {p.name for p in plugins})
    if unknown:
        raise ParameterError(f"Parameters given for plugin(s) {', '.join(unknown)} that are not being run "
                             f"(running: {', '.join(p.name for p in plugins)}).")
    return {p.name: parse_params(p, params.get(p.name)) for p in plugins}


def resolve_images(folder_or_files: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files to measure: a folder's images (see :func:`mcp_core.io.list_images`) or the files given.

    Raises
    ------
    ImageReadError
        A path that does not exist, or nothing to measure.
    """
    from ..io import list_images

    items = [folder_or_files] if isinstance(folder_or_files, (str, os.PathLike)) else list(folder_or_files)
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(list_images(p))
        elif p.exists():
            paths.append(p)
        else:
            raise ImageReadError(f"{p} does not exist.")
    if not paths:
        raise ImageReadError(f"No images to measure in {', '.join(map(str, items)) or 'the given list'}.")
    return paths


def measure_frame(data: FrameData, plugins: Sequence[Plugin], params: Mapping[str, BaseModel],
                  reviews: dict | None = None) -> pd.DataFrame:
    """Run frame plugins on one frame: the id columns plus each plugin's columns, one row per object.

    Raises
    ------
    PluginError
        A plugin raised or broke its contract (the message names plugin, image and frame).
    """
    columns: dict[str, Any] = {
        "image": np.full(len(data.ids), data.image_name, dtype=object),
        "frame": np.full(len(data.ids), data.frame, dtype=object),
        "mask_id": data.ids.astype(np.int64),
        "class_id": data.classes[data.ids].astype(np.int64),
        "class_name": np.asarray(data.class_names, dtype=object)[data.classes[data.ids]],
    }
    kept: dict[tuple[str, str, str], np.ndarray] = {}
    for plugin in plugins:
        if plugin.scope != "frame":
            continue
        out = _call(plugin, plugin.compute, data, params[plugin.name], where=_where(data))
        columns.update(frame_output(plugin, out, data))
        if reviews is not None and plugin.review is not None:
            img = _call(plugin, plugin.review, data, params[plugin.name], where=_where(data))
            kept[(data.image_name, data.frame, plugin.name)] = review_output(plugin, img, data)
    if reviews is not None:
        reviews.update(kept)
    return pd.DataFrame(columns)


def measure_labels(labels, image: np.ndarray, plugins: Iterable[str | Plugin] | str = ("basic",),
                   params: Mapping[str, Any] | None = None, *, image_name: str = "", frame: str = "",
                   pixel_size: tuple[float, float] | None = None) -> pd.DataFrame:
    """Measure one in-memory frame (a :class:`~mcp_core.labels.LabelSet` or a mask array) with frame plugins.

    Parameters
    ----------
    labels
        A ``LabelSet`` (classes and class names come with it) or a ``(Y, X)`` integer array.
    image
        ``(Y, X)`` or ``(Y, X, C)`` intensities.
    plugins, params
        As for :func:`measure` (series and table plugins need :func:`measure`).
    image_name, frame, pixel_size
        Filled into the id columns and the frame data.
    """
    chosen = resolve_plugins(plugins)
    wrong = [p.name for p in chosen if p.scope != "frame"]
    if wrong:
        raise PluginError(f"Plugin(s) {', '.join(wrong)} need several frames or the whole table; use measure().")
    parsed = resolve_params(chosen, params)
    masks = getattr(labels, "masks", labels)
    try:
        data = FrameData.build(masks, image, getattr(labels, "classes", None),
                               tuple(getattr(labels, "class_names", ("unassigned",))), pixel_size, image_name, frame)
    except ValueError as exc:
        raise ParameterError(f"Cannot measure {image_name or 'this frame'}: {exc}.") from exc
    return measure_frame(data, chosen, parsed)


def run_measurements(folder_or_files, plugins: Iterable[str | Plugin] | str = ("basic",),
                     params: Mapping[str, Any] | None = None, *, source: LabelSource = "pred",
                     series: SeriesMode = "file", progress: ProgressFn | None = None, reviews: bool = False,
                     cancel: Callable[[], bool] | None = None) -> MeasureResult:
    """Measure every labelled frame of a folder (or a list of image files) with the chosen plugins.

    Parameters
    ----------
    folder_or_files
        A project folder, an image file, or a list of either.
    plugins
        Plugin names (see ``multicellpose plugins list``) or :class:`Plugin` objects.
    params
        ``{plugin name: {parameter: value}}``; what is left out takes the defaults.
    source
        ``"pred"`` measures the model's predictions (``<stem>_pred.npy``), ``"seg"`` the
        hand-made or corrected labels (``<stem>_seg.npy``, or a ``_masks`` TIFF pair).
    series
        What a series plugin (tracking) sees as one time series: ``"file"``, the T frames of
        each file; ``"folder"``, the frames of all files in name order (files holding one time
        point each). Either way scenes and Z planes are separate series.
    progress
        Called as ``progress(images done, images in total, message)``.
    reviews
        Keep the review label images plugins offer.
    cancel
        Polled between frames; when it returns true the run stops with what it has.

    Returns
    -------
    MeasureResult

    Raises
    ------
    PluginError, ParameterError, ImageReadError
        Before any work: an unknown plugin, a bad parameter, a missing path or no image at all.
    """
    if source not in ("pred", "seg"):
        raise ParameterError(f"Label source must be 'pred' (the model's _pred.npy) or 'seg' (labels, _seg.npy), "
                             f"got {source!r}.")
    if series not in ("file", "folder"):
        raise ParameterError(f"series must be 'file' or 'folder', got {series!r}.")
    chosen = resolve_plugins(plugins)
    parsed = resolve_params(chosen, params)
    images = resolve_images(folder_or_files)
    result = MeasureResult(objects=pd.DataFrame(columns=list(ID_COLUMNS)), source=source)
    keep_frames = any(p.scope == "series" for p in chosen)
    pieces: list[pd.DataFrame] = []
    frame_rows: list[dict] = []
    series_groups: dict[tuple, list[FrameData]] = {}
    review_store = result.reviews if reviews else None
    total = len(images)
    for done, path in enumerate(images):
        if progress:
            progress(done, total, f"Measuring {path.name}")
        if cancel and cancel():
            result.cancelled = True
            break
        for data, info in _frames_of(path, source, result.skipped, cancel):
            try:
                pieces.append(measure_frame(data, chosen, parsed, review_store))
            except PluginError as exc:
                _skip(result.skipped, f"{exc} Skipped {_where(data)}.")
                continue
            frame_rows.append(info)
            if keep_frames:
                key = _series_key(path, data.frame, series)
                series_groups.setdefault(key, []).append(data)
        if cancel and cancel():
            result.cancelled = True
            break
    if progress:
        progress(total if not result.cancelled else done, total, "Measured" if not result.cancelled else "Cancelled")
    objects = pd.concat(pieces, ignore_index=True) if pieces else _empty_objects(chosen)
    objects = _add_series(objects, chosen, parsed, series_groups, result.skipped)
    result.objects = objects
    result.frames = pd.DataFrame(frame_rows, columns=list(FRAME_COLUMNS))
    for plugin in chosen:
        if plugin.scope != "table":
            continue
        try:
            out = _call(plugin, plugin.compute, objects, result.frames, parsed[plugin.name], where="the measurement table")
            result.tables[plugin.name] = table_output(plugin, out)
        except PluginError as exc:
            _skip(result.skipped, f"{exc} No {plugin.name} table was made.")
    return result


def measure(folder_or_files, plugins: Iterable[str | Plugin] | str = ("basic",),
            params: Mapping[str, Any] | None = None, *, source: LabelSource = "pred", series: SeriesMode = "file",
            progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> pd.DataFrame:
    """The per-object table of :func:`run_measurements` (same parameters).

    ``df.attrs["skipped"]`` lists what was reported and skipped and ``df.attrs["source"]``
    which labels were measured. Table plugins' outputs (the per-class summary) come from
    :func:`run_measurements`.
    """
    result = run_measurements(folder_or_files, plugins, params, source=source, series=series,
                              progress=progress, cancel=cancel)
    df = result.objects
    df.attrs["skipped"] = list(result.skipped)
    df.attrs["source"] = result.source
    return df


# ---------------------------------------------------------------------------- internals
def _call(plugin: Plugin, fn: Callable, *args, where: str) -> Any:
    try:
        return fn(*args)
    except MCPError as exc:
        raise PluginError(f"Plugin {plugin.name!r} on {where}: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"Plugin {plugin.name!r} failed on {where}: {type(exc).__name__}: {exc}.") from exc


def _skip(skipped: list[str], message: str) -> None:
    log.warning(message)
    skipped.append(message)


def _where(data: FrameData) -> str:
    return data.image_name + (f" frame {data.frame}" if data.frame else "")


def _frames_of(path: Path, source: str, skipped: list[str], cancel: Callable[[], bool] | None):
    """Yield ``(FrameData, frame info)`` for each labelled frame of one image, reporting bad ones."""
    from ..filenames import label_path
    from ..io import open_image
    from ..labels import load_labels_for

    try:
        src = open_image(path)
    except ImageReadError as exc:
        _skip(skipped, f"{exc} Skipped {path.name}.")
        return
    with src:
        frames = list(src.frames)
        pixel_size = src.meta.pixel_size
        for frame in frames:
            if cancel and cancel():
                return
            where = path.name + (f" frame {frame}" if frame else "")
            lpath = label_path(path, frame, source)  # type: ignore[arg-type]
            try:
                labels = load_labels_for(path, frame, source)
            except MCPError as exc:
                _skip(skipped, f"{exc} Skipped {where}.")
                continue
            if labels is None:
                what = "predictions" if source == "pred" else "labels"
                _skip(skipped, f"{where} has no {what} ({lpath.name} not found); skipped.")
                continue
            try:
                pixels = src.read(frame)
            except Exception as exc:
                _skip(skipped, f"Cannot read {where}: {exc}. Skipped.")
                continue
            if pixels.shape[:2] != labels.shape:
                _skip(skipped, f"{where}: the labels ({lpath.name if lpath.exists() else 'masks file'}) have shape "
                               f"{labels.shape} but the image is {pixels.shape[:2]}; skipped.")
                continue
            try:
                data = FrameData.build(labels.masks, pixels, labels.classes, tuple(labels.class_names), pixel_size,
                                       path.name, frame)
            except ValueError as exc:
                _skip(skipped, f"{where}: {exc}; skipped.")
                continue
            info = {"image": path.name, "frame": frame, "height": labels.shape[0], "width": labels.shape[1],
                    "pixel_size_y": pixel_size[0] if pixel_size else np.nan,
                    "pixel_size_x": pixel_size[1] if pixel_size else np.nan,
                    "n_objects": len(data.ids), "labels_file": lpath.name if lpath.exists() else "masks TIFF"}
            yield data, info


def _series_key(path: Path, frame: str, series: str) -> tuple:
    from ..io import parse_frame_id

    parts = parse_frame_id(frame)
    rest = tuple(sorted((a, i) for a, i in parts.items() if a != "T"))
    return (rest,) if series == "folder" else (str(path), rest)


def _add_series(objects: pd.DataFrame, chosen: Sequence[Plugin], parsed: Mapping[str, BaseModel],
                groups: Mapping[tuple, list[FrameData]], skipped: list[str]) -> pd.DataFrame:
    """Run series plugins on each series and join their rows onto the objects by (image, frame, mask_id)."""
    for plugin in chosen:
        if plugin.scope != "series":
            continue
        tables = []
        for members in groups.values():
            members = sorted(members, key=_time_of) if len({m.image_name for m in members}) == 1 else members
            where = members[0].image_name + (" and following images" if len({m.image_name for m in members}) > 1 else "")
            try:
                out = _call(plugin, plugin.compute, members, parsed[plugin.name], where=where)
                table = series_output(plugin, out, members)
            except PluginError as exc:
                _skip(skipped, f"{exc} Its {plugin.name} columns are left empty.")
                continue
            t = table.pop("t").to_numpy(np.int64)
            table.insert(0, "image", [members[i].image_name for i in t])
            table.insert(1, "frame", [members[i].frame for i in t])
            tables.append(table)
        declared = [c for c in plugin.columns if "{" not in c]
        if tables:
            joined = pd.concat(tables, ignore_index=True)
        else:
            joined = pd.DataFrame({c: pd.Series(dtype=float) for c in ["image", "frame", "mask_id", *declared]})
            joined[["image", "frame"]] = joined[["image", "frame"]].astype(object)
            joined["mask_id"] = joined["mask_id"].astype(np.int64)
        objects = objects.merge(joined, on=["image", "frame", "mask_id"], how="left")
    return objects


def _time_of(data: FrameData) -> int:
    from ..io import parse_frame_id

    return parse_frame_id(data.frame).get("T", 0)


def _empty_objects(chosen: Sequence[Plugin]) -> pd.DataFrame:
    cols = {c: pd.Series(dtype=object if c in ("image", "frame", "class_name") else np.int64) for c in ID_COLUMNS}
    for p in chosen:
        if p.scope == "frame":
            for c in p.columns:
                if "{" not in c:
                    cols[c] = pd.Series(dtype=float)
    return pd.DataFrame(cols)
