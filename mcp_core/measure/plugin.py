"""What a measurement plugin is: its declaration, its inputs, and the pluggy hook that finds it.

A plugin module holds one ``@hookimpl``-decorated function, ``mcp_measure_plugins()``, that
returns :class:`Plugin` objects; a package makes it known under the entry-point group
``multicellpose.measure`` (the built-ins in ``plugins/`` do exactly this)::

    [project.entry-points."multicellpose.measure"]
    my_plugin = "my_package.my_module"

Three scopes of plugin exist:

``"frame"``
    ``compute(data: FrameData, params) -> columns``: one row per object of one frame, in the
    order of ``data.ids``. The host adds ``image``, ``frame``, ``mask_id``, ``class_id`` and
    ``class_name``.
``"series"``
    ``compute(frames: Sequence[FrameData], params) -> table``: the frames of one time series in
    time order; one row per object per frame, with ``t`` (the frame's position in *frames*) and
    ``mask_id`` columns naming the object.
``"table"``
    ``compute(objects: DataFrame, frames: DataFrame, params) -> table``: runs after the others
    on the per-object table and returns a table of its own (e.g. a summary per class).

A frame or series plugin may return a :class:`PluginOutput` instead of bare columns: the
columns plus extra tables (e.g. one row per cluster) and overlay layers (points, lines,
outlines, a label image) drawn over the masks. Both are declared on the :class:`Plugin`
(``tables``, ``overlays``) like its columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pluggy
from pydantic import BaseModel

from ..errors import MCPError

PROJECT = "multicellpose"
ENTRY_POINT_GROUP = "multicellpose.measure"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Scope = Literal["frame", "series", "table"]
OverlayKind = Literal["points", "lines", "outlines", "labels"]
OVERLAY_KINDS = ("points", "lines", "outlines", "labels")
#: Columns the host owns; a frame plugin never returns them (a series plugin returns ``frame`` and ``mask_id``).
ID_COLUMNS = ("image", "frame", "mask_id", "class_id", "class_name")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PluginError(MCPError):
    """A plugin is unknown, cannot be loaded, breaks its contract, or fails on an image."""


@dataclass(frozen=True, eq=False)
class FrameData:
    """Everything a plugin gets about one frame; arrays are read-only.

    Attributes
    ----------
    labels
        ``(Y, X)`` integer instance masks, 0 = background.
    image
        ``(Y, X, C)`` ``float64`` intensities (the file's values, not normalised).
    classes
        Class id per mask id (index = mask id; ``classes[0] == 0``).
    ids
        The mask ids present in ``labels``, sorted: a frame plugin returns its rows in this order.
    class_names
        Name per class id; ``class_names[0]`` is "unassigned".
    pixel_size
        ``(y, x)`` in micrometres when the file says so, else ``None``.
    image_name, frame
        Where the frame comes from (for messages; plugins need not use them).
    second
        A second ``(Y, X)`` label set of the same frame (e.g. nuclei when ``labels`` are cells), for
        plugins declared with ``second_labels=True``; ``None`` otherwise.
    scores
        The model's per-object scores stored with the labels (``{name: values indexed by mask
        id}``, see :mod:`mcp_core.confidence`), or ``None`` when the labels carry none.
    """

    labels: np.ndarray
    image: np.ndarray
    classes: np.ndarray
    ids: np.ndarray
    class_names: tuple[str, ...] = ("unassigned",)
    pixel_size: tuple[float, float] | None = None
    image_name: str = ""
    frame: str = ""
    second: np.ndarray | None = None
    scores: Mapping[str, np.ndarray] | None = None

    @property
    def n_channels(self) -> int:
        return int(self.image.shape[-1])

    @classmethod
    def build(cls, labels: np.ndarray, image: np.ndarray, classes: np.ndarray | None = None,
              class_names: tuple[str, ...] | list[str] = ("unassigned",), pixel_size: tuple[float, float] | None = None,
              image_name: str = "", frame: str = "", second: np.ndarray | None = None,
              scores: Mapping[str, np.ndarray] | None = None) -> FrameData:
        """Frame data from plain arrays: ``image`` may be ``(Y, X)`` or ``(Y, X, C)``; arrays are copied read-only.

        Parameters
        ----------
        labels
            ``(Y, X)`` non-negative integer masks.
        image
            Intensities of the same ``(Y, X)``.
        classes
            Class per mask id (default: all 0); shorter tables are padded with 0.
        class_names, pixel_size, image_name, frame, second, scores
            See the class attributes.

        Raises
        ------
        ValueError
            When shapes or types do not fit (the runner turns this into a message naming the image).
        """
        labels = _check_labels(labels, "labels")
        if second is not None:
            second = np.array(_check_labels(second, "the second label set"))
            if second.shape != labels.shape:
                raise ValueError(f"the second label set has shape {second.shape} but the labels {labels.shape}")
            second.flags.writeable = False
        image = np.asarray(image, dtype=np.float64)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[:2] != labels.shape:
            raise ValueError(f"labels have shape {labels.shape} but the image has shape {image.shape[:2]} "
                             f"(full shape {image.shape})")
        top = int(labels.max(initial=0))
        table = np.zeros(top + 1, np.int64)
        if classes is not None:
            given = np.asarray(classes, np.int64).ravel()[: top + 1]
            table[: len(given)] = given
        table[0] = 0
        present = np.zeros(top + 1, bool)
        present[labels.ravel()] = True
        present[0] = False
        names = tuple(class_names) or ("unassigned",)
        if int(table.max(initial=0)) >= len(names):
            names += tuple(f"class {i}" for i in range(len(names), int(table.max()) + 1))
        arrays = [np.array(labels), np.array(image), table, np.flatnonzero(present)]
        for a in arrays:
            a.flags.writeable = False
        if scores:
            scores = {str(k): np.array(v, np.float64) for k, v in scores.items()}
            for v in scores.values():
                v.flags.writeable = False
        return cls(*arrays, names, pixel_size, image_name, frame, second, scores or None)


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise ValueError(f"{what} must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{what} must not be negative")
    return labels


@dataclass(frozen=True, eq=False)
class Overlay:
    """One layer a plugin draws over the masks of one frame.

    Coordinates are ``(x, y)`` in pixels with the convention of :mod:`mcp_core.outlines`:
    pixel ``(row i, column j)`` covers ``x`` in ``[j, j + 1]`` and ``y`` in ``[i, i + 1]``, so its
    centre is ``(j + 0.5, i + 0.5)``. Build layers with :meth:`points`, :meth:`lines`,
    :meth:`outlines` and :meth:`labels`.

    Attributes
    ----------
    name
        The layer's name, declared in :attr:`Plugin.overlays`.
    kind
        ``"points"``: ``data`` is an ``(N, 2)`` array; ``"lines"`` (open polylines) and
        ``"outlines"`` (closed rings): ``data`` is a tuple of ``(N_i, 2)`` arrays; ``"labels"``:
        ``data`` is a ``(Y, X)`` integer image (0 = nothing).
    data
        As described by ``kind``.
    ids
        The id of each point, line or ring (for colour and picking): a mask id, or the plugin's
        own number (a cluster, a track) as the layer's declared description says; for a
        ``"labels"`` layer, the ids of its label image's regions.
    """

    name: str
    kind: OverlayKind
    data: np.ndarray | tuple[np.ndarray, ...]
    ids: np.ndarray

    @classmethod
    def points(cls, name: str, xy: np.ndarray, ids: np.ndarray) -> Overlay:
        """Markers at ``xy`` (``(N, 2)``), one per id."""
        return cls(name, "points", np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(ids, np.int64).ravel())

    @classmethod
    def lines(cls, name: str, paths: list[np.ndarray], ids: np.ndarray) -> Overlay:
        """Open polylines, each an ``(N_i, 2)`` array of ``(x, y)``, one per id."""
        return cls(name, "lines", tuple(np.asarray(p, np.float64).reshape(-1, 2) for p in paths),
                   np.asarray(ids, np.int64).ravel())

    @classmethod
    def outlines(cls, name: str, regions: np.ndarray, ids_of: np.ndarray | None = None) -> Overlay:
        """Outer rings of each region of a ``(Y, X)`` integer image (pixel-edge polygons).

        Parameters
        ----------
        regions
            Label image whose regions are outlined (e.g. clusters numbered 1..m).
        ids_of
            Mask id to report per region number (index = region number); default the region number.
        """
        from ..outlines import label_outlines

        traced = label_outlines(np.asarray(regions))
        numbers = np.array(sorted(traced), np.int64)
        ids = numbers if ids_of is None else np.asarray(ids_of, np.int64)[numbers]
        return cls(name, "outlines", tuple(traced[int(k)].outer for k in numbers), ids)

    @classmethod
    def labels(cls, name: str, image: np.ndarray) -> Overlay:
        """A label image (0 = nothing), drawn filled and translucent."""
        image = np.asarray(image)
        return cls(name, "labels", image, np.unique(image[image > 0]).astype(np.int64))


@dataclass(frozen=True, eq=False)
class PluginOutput:
    """What a frame or series plugin may return instead of bare columns.

    Attributes
    ----------
    columns
        The per-object columns (a dict of 1-D arrays or a DataFrame), as a bare return would be.
    tables
        Extra tables by declared name (``Plugin.tables``), e.g. one row per cluster; the host
        prepends ``image`` and ``frame`` (frame plugins) or ``image`` (series plugins).
    overlays
        Frame plugins: a list of :class:`Overlay`. Series plugins: ``{t: [Overlay, ...]}`` by
        the frame's position in the series. Either may be given as a function of no arguments
        returning them, so layers that cost time are only made when someone wants to see them.
    """

    columns: Any
    tables: Mapping[str, Any] = field(default_factory=dict)
    overlays: Any = ()


@dataclass(frozen=True, eq=False)
class Plugin:
    """A measurement plugin's declaration.

    Attributes
    ----------
    name
        Unique, lower case, ``[a-z][a-z0-9_]*`` (at most 40 characters).
    title
        Short human name for menus.
    description
        One or two sentences for the UI and ``plugins list``.
    params
        A pydantic model: its fields (type, default, bounds, choices, ``description`` as help
        text) are the plugin's parameters. Every field needs a default; ``extra="forbid"``
        makes misspelt parameters an error.
    columns
        ``{column name: description}`` of what ``compute`` returns. ``{c}`` in a name stands
        for a channel index (``mean_c{c}`` -> ``mean_c0``, ``mean_c1``...); any other ``{word}``
        stands for any text (a table plugin naming columns after its input's).
    compute
        The computation (signature by ``scope``, see the module docstring).
    scope
        ``"frame"``, ``"series"`` or ``"table"``.
    review
        Optional ``review(data, params) -> (Y, X) integer label image`` for visual review
        (frame plugins only), e.g. the detected droplets.
    tables
        ``{table name: {column name: description}}`` of the extra tables ``compute`` returns in a
        :class:`PluginOutput` (frame and series plugins). Names follow the plugin-name rule.
    overlays
        ``{layer name: description}`` of the :class:`Overlay` layers ``compute`` may return.
    second_labels
        The plugin needs a second label set of the same frame (``FrameData.second``), e.g.
        children to associate with the measured objects.
    """

    name: str
    title: str
    description: str
    params: type[BaseModel]
    columns: Mapping[str, str]
    compute: Callable[..., Any]
    scope: Scope = "frame"
    review: Callable[..., np.ndarray] | None = None
    tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    overlays: Mapping[str, str] = field(default_factory=dict)
    second_labels: bool = False
    source: str = field(default="", compare=False)

    def schema(self) -> dict:
        """JSON schema of the parameters (the UI builds its form from it)."""
        return self.params.model_json_schema()

    def defaults(self) -> BaseModel:
        """The parameters at their defaults."""
        return self.params()

    def summary(self) -> dict[str, Any]:
        """Name, title, description, scope, columns and parameter schema as plain JSON-able data."""
        return {"name": self.name, "title": self.title, "description": self.description, "scope": self.scope,
                "columns": dict(self.columns), "params": self.schema(), "review": self.review is not None,
                "tables": {k: dict(v) for k, v in self.tables.items()}, "overlays": dict(self.overlays),
                "second_labels": self.second_labels, "source": self.source}


def column_regex(pattern: str) -> re.Pattern:
    """Regex of a declared column name: ``{c}`` matches a channel index, other ``{word}`` any text."""
    parts = []
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[pos:m.start()]))
        parts.append(r"\d+" if m.group(1) == "c" else r".+")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$")


def expand_columns(patterns: Mapping[str, str] | list[str], n_channels: int) -> list[str]:
    """Concrete names of declared columns that need no input table: ``{c}`` expanded per channel.

    Patterns with other placeholders are left out (they depend on a table plugin's input).
    """
    out = []
    for p in patterns:
        names = {m.group(1) for m in _PLACEHOLDER.finditer(p)}
        if not names:
            out.append(p)
        elif names == {"c"}:
            out.extend(p.replace("{c}", str(c)) for c in range(n_channels))
    return out


def open_patterns(patterns: Mapping[str, str] | list[str]) -> list[re.Pattern]:
    """Regexes of the declared columns whose names depend on the input (a placeholder other than ``{c}``)."""
    return [column_regex(p) for p in patterns if {m.group(1) for m in _PLACEHOLDER.finditer(p)} - {"c"}]


class MeasureSpec:
    """Hook specifications for measurement plugins."""

    @hookspec
    def mcp_measure_plugins(self) -> list[Plugin]:
        """Return the :class:`Plugin` objects this module provides."""
