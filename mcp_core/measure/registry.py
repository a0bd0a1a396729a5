"""Finding measurement plugins: the entry-point group, or a module named on the command line.

Loading a broken third-party plugin never breaks the others: its problem is recorded and
shown by ``multicellpose plugins list``. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy

from .contract import check_declaration
from .plugin import ENTRY_POINT_GROUP, PROJECT, MeasureSpec, Plugin, PluginError


@dataclass
class Catalog:
    """The installed plugins by name, and what went wrong loading the others."""

    plugins: dict[str, Plugin] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_module(spec: str) -> ModuleType:
    """Import a plugin module from a dotted name (``my_pkg.my_plugin``) or a ``.py`` file path.

    Raises
    ------
    PluginError
        When the file does not exist or the module cannot be imported.
    """
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginError(f"Plugin file {path} does not exist.")
        name = f"mcp_plugin_file_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginError(f"{path} cannot be imported as a Python module.")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise PluginError(f"Importing plugin file {path} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise PluginError(f"No plugin or module named {spec!r} (not an installed plugin name, not an importable "
                          f"module, not a .py file).") from exc
    except Exception as exc:
        raise PluginError(f"Importing plugin module {spec} failed: {type(exc).__name__}: {exc}") from exc


def plugins_of_module(module: ModuleType, source: str | None = None) -> list[Plugin]:
    """The plugins a module declares through its ``mcp_measure_plugins`` hook.

    Raises
    ------
    PluginError
        When the module has no hook, the hook fails, or it returns something other than plugins.
    """
    source = source or module.__name__
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(MeasureSpec)
    try:
        pm.register(module, name=source)
    except Exception as exc:  # pluggy rejects hooks with wrong arguments
        raise PluginError(f"{source}: the hook does not match the specification: {exc}") from exc
    if not any(impl.plugin is module for impl in pm.hook.mcp_measure_plugins.get_hookimpls()):
        raise PluginError(f"{source} has no @hookimpl function named mcp_measure_plugins().")
    try:
        batches = pm.hook.mcp_measure_plugins()
    except Exception as exc:
        raise PluginError(f"{source}: mcp_measure_plugins() raised {type(exc).__name__}: {exc}") from exc
    found: list[Plugin] = []
    for batch in batches:
        if not isinstance(batch, (list, tuple)):
            raise PluginError(f"{source}: mcp_measure_plugins() must return a list of Plugin, got {type(batch).__name__}.")
        for item in batch:
            if not isinstance(item, Plugin):
                raise PluginError(f"{source}: mcp_measure_plugins() returned {type(item).__name__}, not a Plugin.")
            found.append(item if item.source else dataclasses.replace(item, source=source))
    return found


@functools.cache
def catalog() -> Catalog:
    """Plugins of the ``multicellpose.measure`` entry-point group (built-ins included), loaded once."""
    out = Catalog()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"{ep.value} (entry point {ep.name!r})"
        try:
            module = ep.load()
            if not isinstance(module, ModuleType):
                raise PluginError(f"{where} must name a module, not {type(module).__name__}.")
            found = plugins_of_module(module, ep.value)
        except PluginError as exc:
            out.problems.append(str(exc))
            continue
        except Exception as exc:
            out.problems.append(f"Loading {where} failed: {type(exc).__name__}: {exc}")
            continue
        for plugin in found:
            unusable = check_declaration(plugin, strict=False)
            if unusable:
                out.problems.append(f"Plugin {plugin.name!r} from {plugin.source} is not usable: {'; '.join(unusable)} "
                                    f"(see 'multicellpose plugins validate {plugin.source}').")
                continue
            if plugin.name in out.plugins:
                out.problems.append(f"Two plugins are named {plugin.name!r}: from {out.plugins[plugin.name].source} "
                                    f"and from {plugin.source}; the second is ignored.")
                continue
            out.plugins[plugin.name] = plugin
    return out


def refresh() -> None:
    """Forget the loaded catalog (after installing a plugin package)."""
    catalog.cache_clear()


def list_plugins() -> list[Plugin]:
    """The installed plugins, by name."""
    return [catalog().plugins[n] for n in sorted(catalog().plugins)]


def get_plugin(name: str) -> Plugin:
    """The installed plugin called *name*.

    Raises
    ------
    PluginError
        When no installed plugin has that name (the message lists those that exist).
    """
    plugins = catalog().plugins
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise PluginError(f"Unknown plugin {name!r}; installed plugins: {known}.")
    return plugins[name]
