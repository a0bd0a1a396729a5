"""Exports of label sets for other tools: ImageJ ROI zip, QuPath GeoJSON, label TIFF.

Outlines run along pixel edges (see :mod:`mcp_core.outlines`), so ImageJ and QuPath fill
them back to exactly the same pixels. Every file is written atomically.

>>> from mcp_core.export import export_labels
>>> export_labels(labels, "out/cells.geojson", "geojson")
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from .atomic import atomic_write, atomic_write_text
from .errors import ParameterError
from .labels import LabelSet
from .outlines import Outline, label_outlines

ExportFormat = Literal["roi", "geojson", "tiff"]
FORMATS: dict[str, str] = {"roi": "_rois.zip", "geojson": ".geojson", "tiff": "_masks.tif"}


def _frame_index(frame: str) -> dict[str, int]:
    """Zero-based ``{"t": .., "z": ..}`` of a frame id (roifile stores them one-based, as ImageJ counts)."""
    from .io import parse_frame_id

    try:
        parts = parse_frame_id(frame)
    except ValueError:
        return {}
    return {k.lower(): v for k, v in parts.items() if k in "TZ"}


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        return (128, 128, 128)
    return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def imagej_rois(labels: LabelSet, frame: str = "") -> list:
    """One ImageJ polygon ROI per object (its largest outer ring), named ``<mask id>-<class name>``.

    The ROI's stroke colour is the class colour, its group the class id (when below 256), and
    for a frame id with T or Z its hyperstack position. Holes are not represented.
    """
    import roifile

    position = _frame_index(frame)
    rois = []
    for mask_id, shape in label_outlines(labels.masks).items():
        cls = labels.class_of(mask_id)
        roi = roifile.ImagejRoi.frompoints(shape.outer.astype(np.int32), name=f"{mask_id:05d}-{_safe(labels.class_names[cls])}",
                                           t=position.get("t"), z=position.get("z"))
        roi.roitype = roifile.ROI_TYPE.TRACED
        r, g, b = _rgb(labels.class_colors[cls])
        roi.stroke_color = bytes((255, r, g, b))
        roi.group = cls if cls < 256 else 0
        rois.append(roi)
    return rois


def write_imagej_rois(labels: LabelSet, path: str | os.PathLike, frame: str = "") -> Path:
    """Write an ImageJ/Fiji ROI set (``.zip``, open it with the ROI Manager)."""
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for roi in imagej_rois(labels, frame):
            zf.writestr(f"{roi.name}.roi", roi.tobytes())
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())
    return path


def _rings(polygon: tuple[np.ndarray, list[np.ndarray]]) -> list[list[list[float]]]:
    outer, holes = polygon
    return [np.vstack([r, r[:1]]).tolist() for r in (outer, *holes)]


def geojson_features(labels: LabelSet, object_type: Literal["detection", "annotation"] = "detection") -> list[dict]:
    """QuPath-compatible GeoJSON features: one per object, with its class as the classification."""
    features = []
    for mask_id, shape in label_outlines(labels.masks).items():
        features.append(_feature(labels, mask_id, shape, object_type))
    return features


def _feature(labels: LabelSet, mask_id: int, shape: Outline, object_type: str) -> dict:
    polys = [_rings(p) for p in shape.polygons]
    geometry = ({"type": "Polygon", "coordinates": polys[0]} if len(polys) == 1
                else {"type": "MultiPolygon", "coordinates": polys})
    cls = labels.class_of(mask_id)
    props: dict = {"objectType": object_type, "name": f"{mask_id}", "mask_id": mask_id, "class_id": cls}
    if cls > 0:
        props["classification"] = {"name": labels.class_names[cls], "color": list(_rgb(labels.class_colors[cls]))}
    return {"type": "Feature", "id": f"mask-{mask_id}", "geometry": geometry, "properties": props}


def write_geojson(labels: LabelSet, path: str | os.PathLike,
                  object_type: Literal["detection", "annotation"] = "detection") -> Path:
    """Write a GeoJSON FeatureCollection QuPath imports (File > Import objects), coordinates in pixels."""
    path = Path(path)
    collection = {"type": "FeatureCollection", "features": geojson_features(labels, object_type)}
    atomic_write_text(path, json.dumps(collection, separators=(",", ":")))
    return path


def write_label_tiff(labels: LabelSet, path: str | os.PathLike) -> list[Path]:
    """Write the masks as a ``uint16``/``uint32`` TIFF and, beside it, the per-pixel class map.

    With a *path* ending in ``_masks.tif`` the class map goes to ``_classes.tif``, the pair
    :func:`mcp_core.labels.load_labels` reads back; returns both paths.
    """
    import tifffile

    path = Path(path)
    name = path.name
    stem = name[: -len("_masks.tif")] if name.endswith("_masks.tif") else path.stem
    classes_path = path.with_name(f"{stem}_classes.tif")
    for target, data in ((path, labels.masks), (classes_path, labels.class_map().astype(np.uint16))):
        with atomic_write(target) as fh:
            tifffile.imwrite(fh, data, compression="zlib", photometric="minisblack")
    return [path, classes_path]


def export_labels(labels: LabelSet, path: str | os.PathLike, fmt: ExportFormat, frame: str = "") -> list[Path]:
    """Write *labels* to *path* in one of :data:`FORMATS` (``"roi"``, ``"geojson"``, ``"tiff"``); returns the files.

    Raises
    ------
    ParameterError
        An unknown format.
    """
    if fmt == "roi":
        return [write_imagej_rois(labels, path, frame)]
    if fmt == "geojson":
        return [write_geojson(labels, path)]
    if fmt == "tiff":
        return write_label_tiff(labels, path)
    raise ParameterError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def export_path(image_path: str | os.PathLike, frame: str, fmt: ExportFormat, folder: str | os.PathLike) -> Path:
    """Where :func:`export_labels` output for one frame of an image goes inside *folder*."""
    from .filenames import image_stem

    stem = image_stem(image_path) + (f"__{frame}" if frame else "")
    return Path(folder) / f"{stem}{FORMATS[fmt]}"
