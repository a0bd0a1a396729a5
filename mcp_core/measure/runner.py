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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..errors import ImageReadError, MCPError, ParameterError
from .contract import (check_declaration, frame_output, overlays_output, parse_params, review_output, series_output,
                       series_overlays, split_output, table_output, tables_output)
from .plugin import ID_COLUMNS, FrameData, Overlay, Plugin, PluginError
from .registry import get_plugin

if TYPE_CHECKING:
    from ..labels import LabelSet

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
    overlays
        Overlay layers ``{(image, frame, plugin): [Overlay, ...]}`` when asked for.
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
    overlays: dict[tuple[str, str, str], list[Overlay]] = field(default_factory=dict)
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
    table_owner = {p.name: p.name for p in out if p.scope == "table"}
    for p in out:
        for table in p.tables:
            if table in table_owner:
                raise PluginError(f"Plugins {table_owner[table]!r} and {p.name!r} both make a table named {table!r}; "
                                  f"run them separately.")
            table_owner[table] = p.name
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
    from ..io import image_files

    items = [folder_or_files] if isinstance(folder_or_files, (str, os.PathLike)) else list(folder_or_files)
    paths = image_files(items)
    if not paths:
        raise ImageReadError(f"No images to measure in {', '.join(map(str, items)) or 'the given list'}.")
    return paths


def measure_frame(data: FrameData, plugins: Sequence[Plugin], params: Mapping[str, BaseModel],
                  reviews: dict | None = None, tables: dict[str, list[pd.DataFrame]] | None = None,
                  overlays: dict | None = None, overlays_of: Collection[str] | None = None) -> pd.DataFrame:
    """Run frame plugins on one frame: the id columns plus each plugin's columns, one row per object.

    Parameters
    ----------
    data, plugins, params
        The frame, the plugins to run and their validated parameters.
    reviews
        When given, filled with review images by ``(image, frame, plugin)``.
    tables
        When given, each extra table (``image`` and ``frame`` prepended) is appended to ``tables[name]``.
    overlays
        When given, filled with overlay layers by ``(image, frame, plugin)``.
    overlays_of
        Keep only these plugins' overlay layers (default: every plugin's).

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
    layers: dict[tuple[str, str, str], list[Overlay]] = {}
    extra: dict[str, pd.DataFrame] = {}
    for plugin in plugins:
        if plugin.scope != "frame":
            continue
        key = (data.image_name, data.frame, plugin.name)
        out = _call(plugin, plugin.compute, data, params[plugin.name], where=_where(data))
        columns.update(frame_output(plugin, out, data))
        _, made, drawn = split_output(plugin, out)
        for name, table in tables_output(plugin, made, data.n_channels, _where(data)).items():
            table.insert(0, "image", data.image_name)
            table.insert(1, "frame", data.frame)
            extra[name] = table
        if overlays is not None and (overlays_of is None or plugin.name in overlays_of):
            checked = overlays_output(plugin, drawn, data)
            if checked:
                layers[key] = checked
        if reviews is not None and plugin.review is not None:
            img = _call(plugin, plugin.review, data, params[plugin.name], where=_where(data))
            kept[key] = review_output(plugin, img, data)
    if reviews is not None:
        reviews.update(kept)
    if overlays is not None:
        overlays.update(layers)
    if tables is not None:
        for name, table in extra.items():
            tables.setdefault(name, []).append(table)
    return pd.DataFrame(columns)


def run_labels(labels, image: np.ndarray, plugins: Iterable[str | Plugin] | str = ("basic",),
               params: Mapping[str, Any] | None = None, *, image_name: str = "", frame: str = "",
               pixel_size: tuple[float, float] | None = None, second=None, overlays: bool = False) -> MeasureResult:
    """Measure one in-memory frame with frame plugins: objects, extra tables and (when asked) overlays.

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
    second
        A second label set of the frame (``LabelSet`` or array) for plugins that need one (``association``).
    overlays
        Keep the overlay layers the plugins return.

    Raises
    ------
    PluginError, ParameterError
        A plugin that is unknown, needs more than one frame, fails or needs a missing second label set.
    """
    chosen = resolve_plugins(plugins)
    wrong = [p.name for p in chosen if p.scope != "frame"]
    if wrong:
        raise PluginError(f"Plugin(s) {', '.join(wrong)} need several frames or the whole table; use measure().")
    parsed = resolve_params(chosen, params)
    needy = [p.name for p in chosen if p.second_labels]
    if needy and second is None:
        raise ParameterError(f"Plugin(s) {', '.join(needy)} need a second label set; none was given.")
    masks = getattr(labels, "masks", labels)
    try:
        data = FrameData.build(masks, image, getattr(labels, "classes", None),
                               tuple(getattr(labels, "class_names", ("unassigned",))), pixel_size, image_name, frame,
                               None if second is None else getattr(second, "masks", second),
                               getattr(labels, "confidence", None))
    except ValueError as exc:
        raise ParameterError(f"Cannot measure {image_name or 'this frame'}: {exc}.") from exc
    result = MeasureResult(objects=pd.DataFrame())
    pieces: dict[str, list[pd.DataFrame]] = {}
    result.objects = measure_frame(data, chosen, parsed, tables=pieces, overlays=result.overlays if overlays else None)
    result.tables = {name: pd.concat(parts, ignore_index=True) for name, parts in pieces.items()}
    return result


def measure_labels(labels, image: np.ndarray, plugins: Iterable[str | Plugin] | str = ("basic",),
                   params: Mapping[str, Any] | None = None, *, image_name: str = "", frame: str = "",
                   pixel_size: tuple[float, float] | None = None, second=None) -> pd.DataFrame:
    """The per-object table of :func:`run_labels` for one in-memory frame (same parameters)."""
    return run_labels(labels, image, plugins, params, image_name=image_name, frame=frame, pixel_size=pixel_size,
                      second=second).objects


def run_measurements(folder_or_files, plugins: Iterable[str | Plugin] | str = ("basic",),
                     params: Mapping[str, Any] | None = None, *, source: LabelSource = "pred",
                     series: SeriesMode = "file", progress: ProgressFn | None = None, reviews: bool = False,
                     cancel: Callable[[], bool] | None = None, overlays: bool | Collection[str] = False,
                     second_source: str | None = None) -> MeasureResult:
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
    overlays
        Keep the overlay layers plugins return: ``True`` for every plugin, or the names of the
        plugins whose layers to keep (label layers of every frame of a folder take memory).
    second_source
        Where plugins that need a second label set (``association``) find it: ``"pred"``,
        ``"seg"``, or a file name template beside the image with ``{stem}`` (the image's name
        without extension) and optionally ``{frame}``, e.g. ``"{stem}_nuclei_masks.tif"``.

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
    needy = [p.name for p in chosen if p.second_labels]
    if needy and not second_source:
        raise ParameterError(f"Plugin(s) {', '.join(needy)} need a second label set: give second_source "
                             f"('pred', 'seg' or a file name template such as '{{stem}}_nuclei_masks.tif').")
    if second_source and second_source not in ("pred", "seg") and "{stem}" not in second_source:
        raise ParameterError(f"second_source must be 'pred', 'seg' or a file name template containing {{stem}}, "
                             f"got {second_source!r}.")
    images = resolve_images(folder_or_files)
    result = MeasureResult(objects=pd.DataFrame(columns=list(ID_COLUMNS)), source=source)
    extra: dict[str, list[pd.DataFrame]] = {}
    keep = {p.name for p in chosen} if overlays is True else set(overlays or ())
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
        for data, info in _frames_of(path, source, result.skipped, cancel, second_source if needy else None):
            try:
                pieces.append(measure_frame(data, chosen, parsed, review_store, extra,
                                            result.overlays if keep else None, keep))
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
    objects = _add_series(objects, chosen, parsed, series_groups, result, keep)
    result.objects = objects
    for plugin in chosen:
        for name, columns in plugin.tables.items():
            if name in extra:
                result.tables[name] = pd.concat(extra[name], ignore_index=True)
            elif plugin.scope == "frame":
                result.tables[name] = _empty_table(["image", "frame"], columns)
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
            progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
            second_source: str | None = None) -> pd.DataFrame:
    """The per-object table of :func:`run_measurements` (same parameters).

    ``df.attrs["skipped"]`` lists what was reported and skipped and ``df.attrs["source"]``
    which labels were measured. Table plugins' outputs (the per-class summary) come from
    :func:`run_measurements`.
    """
    result = run_measurements(folder_or_files, plugins, params, source=source, series=series,
                              progress=progress, cancel=cancel, second_source=second_source)
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


def _read_labels(load: Callable[[], LabelSet | None], skipped: list[str], where: str, missing: str) -> LabelSet | None:
    """``load()``, or ``None`` with the reason in *skipped* (*missing* when there is no label file)."""
    try:
        labels = load()
    except MCPError as exc:
        _skip(skipped, f"{exc} Skipped {where}.")
        return None
    if labels is None:
        _skip(skipped, missing)
    return labels


def _where(data: FrameData) -> str:
    return data.image_name + (f" frame {data.frame}" if data.frame else "")


def second_labels_for(path: Path, frame: str, second_source: str):
    """The second label set of one frame (``pred``, ``seg`` or a ``{stem}`` file name template); ``None`` if absent.

    Raises
    ------
    MCPError
        When the file exists but cannot be read as labels.
    """
    from ..filenames import image_stem
    from ..labels import load_labels, load_labels_for

    if second_source in ("pred", "seg"):
        return load_labels_for(path, frame, second_source)
    name = second_source.replace("{stem}", image_stem(path)).replace("{frame}", frame)
    target = path.parent / name
    return load_labels(target) if target.is_file() else None


def _frames_of(path: Path, source: str, skipped: list[str], cancel: Callable[[], bool] | None,
               second_source: str | None = None):
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
            what = "predictions" if source == "pred" else "labels"
            labels = _read_labels(lambda: load_labels_for(path, frame, source), skipped, where,
                                  f"{where} has no {what} ({lpath.name} not found); skipped.")
            if labels is None:
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
            second = None
            if second_source:
                second = _read_labels(lambda: second_labels_for(path, frame, second_source), skipped, where,
                                      f"{where} has no second label set ({second_source}); skipped.")
                if second is None:
                    continue
            try:
                data = FrameData.build(labels.masks, pixels, labels.classes, tuple(labels.class_names), pixel_size,
                                       path.name, frame, None if second is None else second.masks, labels.confidence)
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
                groups: Mapping[tuple, list[FrameData]], result: MeasureResult, keep: Collection[str]) -> pd.DataFrame:
    """Run series plugins on each series and join their rows onto the objects by (image, frame, mask_id).

    Their extra tables go to ``result.tables`` (``image`` of the series' first frame prepended) and,
    the overlays of the plugins named in *keep* to ``result.overlays``.
    """
    skipped = result.skipped
    for plugin in chosen:
        if plugin.scope != "series":
            continue
        tables = []
        extra: dict[str, list[pd.DataFrame]] = {}
        for members in groups.values():
            members = sorted(members, key=_time_of) if len({m.image_name for m in members}) == 1 else members
            where = members[0].image_name + (" and following images" if len({m.image_name for m in members}) > 1 else "")
            try:
                out = _call(plugin, plugin.compute, members, parsed[plugin.name], where=where)
                table = series_output(plugin, out, members)
                _, made, drawn = split_output(plugin, out)
                made = tables_output(plugin, made, members[0].n_channels if members else 1, where)
                drawn = series_overlays(plugin, drawn, members) if plugin.name in keep else {}
            except PluginError as exc:
                _skip(skipped, f"{exc} Its {plugin.name} columns are left empty.")
                continue
            for name, part in made.items():
                part.insert(0, "image", members[0].image_name)
                extra.setdefault(name, []).append(part)
            for t, layers in drawn.items():
                result.overlays[(members[t].image_name, members[t].frame, plugin.name)] = layers
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
        for name, columns in plugin.tables.items():
            result.tables[name] = (pd.concat(extra[name], ignore_index=True) if name in extra
                                   else _empty_table(["image"], columns))
    return objects


def _empty_table(keys: list[str], columns: Mapping[str, str]) -> pd.DataFrame:
    """A table with no rows: the host's key columns and the declared columns without placeholders."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in keys else float)
                         for c in [*keys, *(c for c in columns if "{" not in c)]})


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
