"""Which image channels feed the model: a multi-select named by the open image's channels.

Up to three channels, in the order picked (the model's first input channel is the first picked). None
picked means the default: for segmentation the model's own (the channels recorded in its sidecar when it
was trained, ``channels`` of :class:`mcp_core.params.TrainParams`), for training the image's first three.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from nicegui import ui

from mcp_core.errors import MCPError
from mcp_core.io import open_image
from mcp_core.params import SegmentParams, json_schema, schema_fields

#: The network reads this many channels: the bound of the parameter schema's ``channels``.
MAX_CHANNELS = schema_fields(json_schema(SegmentParams))["channels"]["maxItems"]


class ChannelPicker:
    """A multi-select of channels by name; :attr:`value` is the picked indices in order, or ``None``.

    Parameters
    ----------
    names
        The channel names of the open image (index = channel).
    value
        Channels picked at the start (``None``: none).
    label
        The input's label.
    hint
        The tooltip: what the channels do and what picking none means.
    names_of
        The names of the image open now, for :meth:`refresh` (call it when another image opens).
    """

    def __init__(self, names: Sequence[str] = (), value: Sequence[int] | None = None, label: str = "Channels",
                 hint: str = "Image channels fed to the model, in order; none: the model's own.",
                 names_of: Callable[[], Sequence[str]] | None = None) -> None:
        self.select = ui.select(self._options(names), value=list(value or []), label=label, multiple=True).props(
            f'dense use-chips max-values={MAX_CHANNELS} placeholder="default"').classes("w-full")
        self.select.tooltip(hint)
        self.names_of = names_of

    @staticmethod
    def _options(names: Sequence[str]) -> dict[int, str]:
        return {i: f"{i}: {name}" if name != f"channel {i}" else name for i, name in enumerate(names)}

    def refresh(self) -> None:
        """Offer the channels of the image open now (from *names_of*)."""
        if self.names_of is not None:
            self.set_names(self.names_of())

    def set_names(self, names: Sequence[str]) -> None:
        """Offer the channels *names*; picked channels the image does not have are dropped."""
        self.select.set_options(self._options(names), value=[c for c in self.select.value or [] if c < len(names)])

    @property
    def value(self) -> list[int] | None:
        """The picked channel indices in order; ``None`` when none are picked."""
        return [int(c) for c in self.select.value or []] or None

    @value.setter
    def value(self, channels: Sequence[int] | None) -> None:
        self.select.value = list(channels or [])

    def mark(self, *markers: str) -> ChannelPicker:
        """Markers on the select (for tests)."""
        self.select.mark(*markers)
        return self


def channel_names_of(path: str | os.PathLike | None) -> list[str]:
    """The channel names of an image file (its metadata only is read); none without a file or when unreadable."""
    if path is None:
        return []
    try:
        with open_image(path) as src:
            return src.channel_names
    except MCPError:
        return []
