"""OME-Zarr (NGFF 0.4 and 0.5) images: lazy planes for the reader registry, lazy regions for blockwise work.

An OME-Zarr image is a folder (``name.zarr`` or ``name.ome.zarr``) whose ``multiscales`` metadata lists
resolution levels, full resolution first. Axes come from that metadata (``t``, ``c``, ``z``, ``y``, ``x``);
``T``/``Z`` index frames and ``C`` is the last axis of what is read. Nothing is read beyond the chunks
a plane or region touches. zarr is imported only when such a file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError
from .source import ImageMeta, ImageSource, as_yxc


def multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``multiscales`` list of a group's attributes (NGFF 0.5 keeps it under ``ome``)."""
    found = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    found = found or attrs.get("multiscales")
    return found if isinstance(found, list) else []


@dataclass
class Level:
    """One resolution level: a zarr array and its axis letters (upper case, e.g. ``"CYX"``)."""

    array: Any
    axes: str
    pixel_size: tuple[float, float] | None = None

    @property
    def shape_yx(self) -> tuple[int, int]:
        return int(self.array.shape[self.axes.index("Y")]), int(self.array.shape[self.axes.index("X")])

    @property
    def channels(self) -> int:
        return int(self.array.shape[self.axes.index("C")]) if "C" in self.axes else 1

    def read(self, y0: int, y1: int, x0: int, x1: int, index: dict[str, int] | None = None) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of one frame (``index`` gives T/Z, 0 by default) as ``(Y, X, C)``."""
        index = index or {}
        sel = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) if a == "C"
                    else index.get(a, 0) for a in self.axes)
        plane = np.asarray(self.array[sel])
        kept = [a for a in self.axes if a in "YXC"]
        return as_yxc(np.transpose(plane, [kept.index(a) for a in "YXC" if a in kept]))


def open_levels(path: str | Path) -> list[Level]:
    """The resolution levels of an OME-Zarr image, full resolution first.

    Raises
    ------
    ImageReadError
        When *path* is not a zarr group with NGFF ``multiscales`` metadata over Y and X.
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(f"{path} is not a readable zarr group: {exc}.") from exc
    scales = multiscales(dict(group.attrs))
    if not scales or not scales[0].get("datasets"):
        raise ImageReadError(f"{path} is a zarr group without OME-Zarr 'multiscales' metadata (not an OME-Zarr image).")
    ms = scales[0]
    axes = "".join(str(a.get("name", "") if isinstance(a, dict) else a).upper() for a in ms.get("axes", []))
    levels = []
    for ds in ms["datasets"]:
        try:
            arr = group[str(ds["path"])]
        except (KeyError, TypeError) as exc:
            raise ImageReadError(f"{path}: level {ds.get('path')!r} listed in 'multiscales' is missing.") from exc
        names = axes or "TCZYX"[-arr.ndim:]
        if len(names) != arr.ndim or "Y" not in names or "X" not in names or set(names) - set("TCZYX"):
            raise ImageReadError(f"{path}: axes {names!r} do not fit level {ds['path']} of shape {arr.shape}.")
        levels.append(Level(arr, names, _pixel_size(ms.get("axes", []), ds)))
    return levels


def _pixel_size(axes: list, dataset: dict) -> tuple[float, float] | None:
    """``(y, x)`` in micrometres from a level's scale transformation, when the axes say micrometer."""
    scale = next((t.get("scale") for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"), None)
    units = {str(a.get("name", "")).lower(): a.get("unit") for a in axes if isinstance(a, dict)}
    names = [str(a.get("name", "")).lower() for a in axes if isinstance(a, dict)]
    if not scale or len(scale) != len(names) or units.get("y") != "micrometer" or units.get("x") != "micrometer":
        return None
    return float(scale[names.index("y")]), float(scale[names.index("x")])


def open_ome_zarr(path: Path) -> ImageSource:
    """An OME-Zarr image as an :class:`ImageSource` (full resolution; one plane read per frame)."""
    levels = open_levels(path)
    top = levels[0]
    sizes = dict(zip(top.axes, (int(n) for n in top.array.shape)))

    def read_plane(index: dict[str, int]) -> np.ndarray:
        return top.read(0, sizes["Y"], 0, sizes["X"], index)

    meta = ImageMeta(axes=top.axes, shape=tuple(sizes.values()), sizes=sizes, dtype=str(top.array.dtype),
                     pixel_size=top.pixel_size, extra={"levels": [lv.shape_yx for lv in levels], "chunks": tuple(top.array.chunks)})
    return ImageSource(path, {a: n for a, n in sizes.items() if a in "TZ"}, read_plane, meta)
