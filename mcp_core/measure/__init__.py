"""Measurements: plugins that turn labels and images into tables with one row per object.

Plugins are found through the ``multicellpose.measure`` entry-point group (the built-ins in
``plugins/`` register there too); see ``plugins/README.md`` for how to write one.

>>> from mcp_core.measure import list_plugins, measure
>>> [p.name for p in list_plugins()]
>>> df = measure("project/", ["basic"], source="seg")
"""

from . import grouped, regions
from .contract import parse_params
from .plugin import ENTRY_POINT_GROUP, ID_COLUMNS, FrameData, Overlay, Plugin, PluginError, PluginOutput, hookimpl
from .registry import get_plugin, list_plugins, load_module, plugins_of_module, refresh
from .runner import MeasureResult, measure, measure_labels, resolve_images, run_labels, run_measurements

__all__ = [
    "ENTRY_POINT_GROUP",
    "ID_COLUMNS",
    "FrameData",
    "MeasureResult",
    "Overlay",
    "Plugin",
    "PluginError",
    "PluginOutput",
    "get_plugin",
    "grouped",
    "hookimpl",
    "list_plugins",
    "load_module",
    "measure",
    "measure_labels",
    "parse_params",
    "plugins_of_module",
    "refresh",
    "regions",
    "resolve_images",
    "run_labels",
    "run_measurements",
]
