"""Reader registry: built-in and third-party image readers behind one pluggy hook.

A third-party package adds a format by exposing a module with a ``@hookimpl``-decorated
``mcp_image_readers()`` function under the entry-point group ``multicellpose.readers``::

    [project.entry-points."multicellpose.readers"]
    myformat = "my_package.reader"
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pluggy

from .source import ImageSource

PROJECT = "multicellpose"
ENTRY_POINT_GROUP = "multicellpose.readers"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Reader:
    """One image format.

    Attributes
    ----------
    name
        Short unique name, e.g. ``"tiff"``.
    extensions
        Lower-case file endings it handles, with the dot (``".ome.tif"`` allowed).
    open
        ``open(path) -> ImageSource``; must not read pixels beyond what metadata needs.
    description
        One line for ``list_formats``.
    """

    name: str
    extensions: tuple[str, ...]
    open: Callable[[Path], ImageSource]
    description: str = ""


class ReaderSpec:
    """Hook specifications for image readers."""

    @hookspec
    def mcp_image_readers(self) -> list[Reader]:
        """Return the :class:`Reader` objects this plugin provides."""


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The reader plugin manager: built-ins plus the entry-point group, loaded once."""
    from . import builtin_readers

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(ReaderSpec)
    pm.register(builtin_readers, name="builtin-readers")
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def readers() -> list[Reader]:
    """All registered readers; later registrations win ties on an extension."""
    found: list[Reader] = []
    for batch in reversed(plugin_manager().hook.mcp_image_readers()):
        found.extend(batch)
    return found


def reader_for(path: Path) -> Reader | None:
    """The reader whose longest extension matches *path*, or ``None``."""
    name = path.name.lower()
    best: tuple[int, Reader] | None = None
    for reader in readers():
        for ext in reader.extensions:
            if name.endswith(ext) and (best is None or len(ext) >= best[0]):
                best = (len(ext), reader)
    return best[1] if best else None
