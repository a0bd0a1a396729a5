"""The plugin contract: checking a declaration, parsing parameters, checking what a plugin returns.

The runner uses the output checks on every call (a plugin that breaks its contract on some
image is reported for that image); :func:`validate_plugin` adds dry runs on tiny synthetic
cases and is what ``multicellpose plugins validate`` prints.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from ..errors import ParameterError
from .plugin import (ID_COLUMNS, NAME_PATTERN, OVERLAY_KINDS, FrameData, Overlay, Plugin, PluginError, PluginOutput,
                     expand_columns, open_patterns)

_SCOPES = ("frame", "series", "table")
_ARITY = {"frame": 2, "series": 2, "table": 3}
#: Columns by which a series plugin names the object of each row.
SERIES_KEYS = ("t", "mask_id")


def parse_params(plugin: Plugin, values: BaseModel | Mapping[str, Any] | None = None) -> BaseModel:
    """Validated parameters of *plugin* from a mapping (missing keys take their defaults).

    Raises
    ------
    ParameterError
        Naming the plugin, the parameter and the problem.
    """
    if isinstance(values, plugin.params):
        return values
    if isinstance(values, BaseModel):
        values = values.model_dump()
    try:
        return plugin.params.model_validate(dict(values or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
        raise ParameterError(f"Plugin {plugin.name!r}: invalid parameter(s): {problems}.") from exc


def check_declaration(plugin: Plugin, strict: bool = True) -> list[str]:
    """Problems with a plugin's declaration (empty when it is sound).

    With ``strict=False`` only the problems that make the plugin unusable are reported (what
    the registry and the runner refuse); missing help text and the like are left to the
    validator.
    """
    hard: list[str] = []
    if not isinstance(plugin.name, str) or not NAME_PATTERN.match(plugin.name):
        hard.append(f"name {plugin.name!r} must be lower case letters, digits and '_', starting with a letter, "
                    f"at most 40 characters")
    if plugin.scope not in _SCOPES:
        hard.append(f"scope {plugin.scope!r} is not one of {', '.join(_SCOPES)}")
    if not (isinstance(plugin.params, type) and issubclass(plugin.params, BaseModel)):
        hard.append("params must be a pydantic BaseModel subclass (its fields are the parameters)")
    if not isinstance(plugin.columns, Mapping) or not plugin.columns or not all(
            isinstance(c, str) and c for c in plugin.columns):
        hard.append("columns must be a non-empty mapping {column name: description}")
    elif plugin.scope != "table":
        hard += [f"column {c!r} is added by the host; a plugin does not declare it" for c in plugin.columns
                 if c in ID_COLUMNS]
    if not callable(plugin.compute):
        hard.append("compute is not callable")
    elif plugin.scope in _ARITY:
        hard += _check_arity("compute", plugin.compute, _ARITY[plugin.scope])
    hard += _check_extras(plugin)
    if plugin.review is not None:
        if plugin.scope != "frame":
            hard.append("review images are only supported for frame plugins")
        elif not callable(plugin.review):
            hard.append("review is not callable")
        else:
            hard += _check_arity("review", plugin.review, 2)
    if not strict or hard:
        return hard
    soft: list[str] = []
    if not str(plugin.title).strip():
        soft.append("title is empty")
    if not str(plugin.description).strip():
        soft.append("description is empty")
    return soft + _check_params_class(plugin.params) + _check_columns(plugin)


def _check_extras(plugin: Plugin) -> list[str]:
    """Hard problems with the declared extra tables, overlay layers and second label set."""
    v: list[str] = []
    tables, overlays = plugin.tables, plugin.overlays
    if not isinstance(tables, Mapping) or not isinstance(overlays, Mapping):
        return ["tables and overlays must be mappings ({table: {column: description}}, {layer: description})"]
    if (tables or overlays) and plugin.scope == "table":
        v.append("extra tables and overlays are only supported for frame and series plugins")
    for name, cols in tables.items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            v.append(f"table name {name!r} must be lower case letters, digits and '_', starting with a letter")
        if not isinstance(cols, Mapping) or not cols or not all(isinstance(c, str) and c for c in cols):
            v.append(f"table {name!r} must declare a non-empty mapping {{column name: description}}")
        elif any(c in ("image", "frame") for c in cols):
            v.append(f"table {name!r} declares 'image' or 'frame', which the host adds")
    v += [f"overlay layer name {n!r} must be lower case letters, digits and '_', starting with a letter"
          for n in overlays if not isinstance(n, str) or not NAME_PATTERN.match(n)]
    if plugin.second_labels and plugin.scope != "frame":
        v.append("a second label set is only supported for frame plugins")
    return v


def _check_arity(what: str, fn, n: int) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    try:
        sig.bind(*range(n))
    except TypeError:
        return [f"{what}{sig} cannot be called with {n} positional arguments"]
    return []


def _check_params_class(cls: type[BaseModel]) -> list[str]:
    v = []
    for name, info in cls.model_fields.items():
        if info.is_required():
            v.append(f"parameter {name!r} has no default (every parameter needs one)")
        if not (info.description or "").strip():
            v.append(f"parameter {name!r} has no description (help text: Field(..., description=...))")
    if cls.model_config.get("extra") != "forbid":
        v.append("params must set model_config = ConfigDict(extra='forbid') so misspelt parameters are errors")
    try:
        json.dumps(cls.model_json_schema())
    except Exception as exc:
        v.append(f"the parameter schema cannot be written as JSON: {type(exc).__name__}: {exc}")
    if not any("default" in x for x in v):
        try:
            cls()
        except Exception as exc:
            v.append(f"the default parameters do not validate: {exc}")
    return v


def _check_columns(plugin: Plugin) -> list[str]:
    v = [f"column {name!r} has no description" for name, desc in plugin.columns.items()
         if not isinstance(desc, str) or not desc.strip()]
    for table, cols in plugin.tables.items():
        v += [f"column {name!r} of table {table!r} has no description" for name, desc in cols.items()
              if not isinstance(desc, str) or not desc.strip()]
    v += [f"overlay layer {name!r} has no description" for name, desc in plugin.overlays.items()
          if not isinstance(desc, str) or not desc.strip()]
    return v


def match_columns(declared: Mapping[str, str], returned: Sequence[str], n_channels: int) -> tuple[list[str], list[str]]:
    """Declared columns missing from *returned*, and returned columns that were not declared."""
    required = expand_columns(declared, n_channels)
    loose = open_patterns(declared)
    missing = [c for c in required if c not in returned]
    extra = [c for c in returned if c not in required and not any(r.match(c) for r in loose)]
    return missing, extra


def _as_columns(plugin: Plugin, out: Any, where: str) -> dict[str, np.ndarray]:
    if isinstance(out, pd.DataFrame):
        out = {c: out[c].to_numpy() for c in out.columns}
    if not isinstance(out, Mapping):
        raise PluginError(f"Plugin {plugin.name!r} returned {type(out).__name__} on {where}; "
                          f"it must return a dict of columns or a pandas DataFrame.")
    cols = {}
    for name, values in out.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise PluginError(f"Plugin {plugin.name!r}: column {name!r} on {where} has shape {arr.shape}; "
                              f"columns must be 1-D.")
        if arr.dtype.kind not in "biufUSO":
            raise PluginError(f"Plugin {plugin.name!r}: column {name!r} on {where} has type {arr.dtype}; "
                              f"use numbers, booleans or text.")
        cols[str(name)] = arr
    lengths = {len(a) for a in cols.values()}
    if len(lengths) > 1:
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned columns of different lengths {sorted(lengths)}.")
    return cols


def _check_declared(plugin: Plugin, cols: Mapping[str, np.ndarray], n_channels: int, where: str,
                    keys: Sequence[str] = (), declared: Mapping[str, str] | None = None, what: str = "") -> None:
    missing, extra = match_columns(plugin.columns if declared is None else declared,
                                   [c for c in cols if c not in keys], n_channels)
    if missing:
        raise PluginError(f"Plugin {plugin.name!r} on {where} did not return declared column(s) {', '.join(missing)}"
                          f"{what}.")
    if extra:
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned undeclared column(s) {', '.join(extra)}{what}.")


def split_output(plugin: Plugin, out: Any) -> tuple[Any, Mapping[str, Any], Any]:
    """``(columns, tables, overlays)`` of what a plugin returned (a :class:`PluginOutput` or bare columns)."""
    if isinstance(out, PluginOutput):
        return out.columns, out.tables, out.overlays
    return out, {}, ()


def tables_output(plugin: Plugin, tables: Any, n_channels: int, where: str) -> dict[str, pd.DataFrame]:
    """Check a plugin's extra tables: declared names, exactly the declared columns.

    Raises
    ------
    PluginError
        Naming the plugin, where, the table and the violation.
    """
    if not isinstance(tables, Mapping):
        raise PluginError(f"Plugin {plugin.name!r} on {where}: PluginOutput.tables must be a dict "
                          f"{{table name: columns}}, got {type(tables).__name__}.")
    missing = [name for name in plugin.tables if name not in tables]
    if missing:
        raise PluginError(f"Plugin {plugin.name!r} on {where} did not return declared table(s) {', '.join(missing)} "
                          f"(return them in PluginOutput.tables, with no rows when there is nothing).")
    out = {}
    for name, value in tables.items():
        if name not in plugin.tables:
            raise PluginError(f"Plugin {plugin.name!r} on {where} returned undeclared table {name!r} "
                              f"(declared: {', '.join(plugin.tables) or 'none'}).")
        cols = _as_columns(plugin, value, f"{where} (table {name!r})")
        _check_declared(plugin, cols, n_channels, where, declared=plugin.tables[name], what=f" in table {name!r}")
        out[name] = pd.DataFrame(cols)
    return out


def overlays_output(plugin: Plugin, overlays: Any, data: FrameData) -> list[Overlay]:
    """Check a frame's overlay layers: declared names, known kinds, well-formed coordinates and ids.

    Raises
    ------
    PluginError
        Naming the plugin, the frame, the layer and the violation.
    """
    where = _where(data)
    overlays = _made(plugin, overlays, where)
    if not isinstance(overlays, (list, tuple)) or not all(isinstance(o, Overlay) for o in overlays):
        raise PluginError(f"Plugin {plugin.name!r} on {where}: overlays must be a list of Overlay layers.")
    for o in overlays:
        bad = _overlay_problem(plugin, o, data.labels.shape)
        if bad:
            raise PluginError(f"Plugin {plugin.name!r} on {where}: overlay layer {o.name!r} {bad}.")
    return list(overlays)


def _made(plugin: Plugin, overlays: Any, where: str) -> Any:
    """The layers themselves: a plugin may return a function making them, called only when they are wanted."""
    if not callable(overlays):
        return overlays
    try:
        return overlays()
    except Exception as exc:
        raise PluginError(f"Plugin {plugin.name!r} failed making its overlays on {where}: "
                          f"{type(exc).__name__}: {exc}.") from exc


def _overlay_problem(plugin: Plugin, o: Overlay, shape: tuple[int, int]) -> str:
    if o.name not in plugin.overlays:
        return f"is not declared (declared: {', '.join(plugin.overlays) or 'none'})"
    if o.kind not in OVERLAY_KINDS:
        return f"has kind {o.kind!r}, not one of {', '.join(OVERLAY_KINDS)}"
    ids = np.asarray(o.ids)
    if ids.ndim != 1 or ids.dtype.kind not in "ui":
        return "needs a 1-D integer array of ids"
    if o.kind == "labels":
        img = np.asarray(o.data)
        if img.shape != shape or img.dtype.kind not in "ui":
            return f"must be an integer image of shape {shape}, got {img.dtype} {img.shape}"
        return ""
    items = [np.asarray(o.data)] if o.kind == "points" else list(o.data)
    if any(a.ndim != 2 or a.shape[1] != 2 or not np.isfinite(a).all() for a in items):
        return "must hold finite (N, 2) arrays of (x, y)"
    n = len(items[0]) if o.kind == "points" else len(items)
    if len(ids) != n:
        return f"has {n} element(s) but {len(ids)} id(s)"
    return ""


def frame_output(plugin: Plugin, out: Any, data: FrameData) -> dict[str, np.ndarray]:
    """Check a frame plugin's result: declared columns only, one row per object in ``data.ids``.

    Raises
    ------
    PluginError
        Naming the plugin, the image and frame, and the violation.
    """
    where = _where(data)
    cols = _as_columns(plugin, split_output(plugin, out)[0], where)
    host = [c for c in cols if c in ID_COLUMNS]
    if host:
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned host column(s) {', '.join(host)}; "
                          f"the host adds them.")
    _check_declared(plugin, cols, data.n_channels, where)
    n = next(iter(map(len, cols.values())), len(data.ids))
    if n != len(data.ids):
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned {n} rows for {len(data.ids)} objects; "
                          f"it must return one row per object, in the order of data.ids.")
    return cols


def series_output(plugin: Plugin, out: Any, frames: Sequence[FrameData]) -> pd.DataFrame:
    """Check a series plugin's result: ``t`` (index into *frames*) and ``mask_id`` name existing objects, once each.

    Raises
    ------
    PluginError
        Naming the plugin, the image and the violation.
    """
    where = frames[0].image_name if frames else "an empty series"
    cols = _as_columns(plugin, split_output(plugin, out)[0], where)
    for key in SERIES_KEYS:
        if key not in cols:
            raise PluginError(f"Plugin {plugin.name!r} on {where} returned no {key!r} column; a series plugin "
                              f"names each row's object by 't' (the frame's position in the series) and 'mask_id'.")
    host = [c for c in cols if c in ID_COLUMNS and c not in SERIES_KEYS]
    if host:
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned host column(s) {', '.join(host)}.")
    _check_declared(plugin, cols, frames[0].n_channels if frames else 1, where, keys=SERIES_KEYS)
    table = pd.DataFrame(cols)
    try:
        t = table["t"].to_numpy().astype(np.int64)
        ids = table["mask_id"].to_numpy().astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"Plugin {plugin.name!r} on {where}: 't' and 'mask_id' must be integers ({exc}).") from exc
    bad_t = (t < 0) | (t >= len(frames))
    if bad_t.any():
        raise PluginError(f"Plugin {plugin.name!r} on {where} returned t = {int(t[bad_t][0])}, outside the "
                          f"series of {len(frames)} frame(s).")
    for i, frame in enumerate(frames):
        mine = ids[t == i]
        if not np.isin(mine, frame.ids).all():
            raise PluginError(f"Plugin {plugin.name!r} on {where} returned a row for mask "
                              f"{int(mine[~np.isin(mine, frame.ids)][0])} at t = {i}, which does not exist there.")
        if len(np.unique(mine)) != len(mine):
            raise PluginError(f"Plugin {plugin.name!r} on {where} returned more than one row for an object at t = {i}.")
    table["t"], table["mask_id"] = t, ids
    return table


def series_overlays(plugin: Plugin, overlays: Any, frames: Sequence[FrameData]) -> dict[int, list[Overlay]]:
    """Check a series plugin's overlays ``{t: [Overlay, ...]}``."""
    overlays = _made(plugin, overlays, frames[0].image_name if frames else "an empty series")
    if not isinstance(overlays, Mapping):
        if overlays in ((), []):
            return {}
        raise PluginError(f"Plugin {plugin.name!r}: a series plugin's overlays must be a dict {{t: [Overlay, ...]}}.")
    out = {}
    for t, layers in overlays.items():
        if not isinstance(t, (int, np.integer)) or not 0 <= t < len(frames):
            raise PluginError(f"Plugin {plugin.name!r} returned overlays for t = {t!r}, outside the series of "
                              f"{len(frames)} frame(s).")
        out[int(t)] = overlays_output(plugin, layers, frames[int(t)])
    return out


def table_output(plugin: Plugin, out: Any) -> pd.DataFrame:
    """Check a table plugin's result (declared columns only)."""
    cols = _as_columns(plugin, out, "the measurement table")
    _check_declared(plugin, cols, 0, "the measurement table")
    return pd.DataFrame(cols)


def review_output(plugin: Plugin, out: Any, data: FrameData) -> np.ndarray:
    """Check a review label image: integer, the frame's ``(Y, X)`` shape."""
    arr = np.asarray(out)
    if arr.shape != data.labels.shape or arr.dtype.kind not in "uib":
        raise PluginError(f"Plugin {plugin.name!r} on {_where(data)}: the review image must be an integer "
                          f"array of shape {data.labels.shape}, got {arr.dtype} {arr.shape}.")
    return arr


def _where(data: FrameData) -> str:
    if not data.image_name:
        return "the given frame"
    return f"{data.image_name}" + (f" frame {data.frame}" if data.frame else "")
