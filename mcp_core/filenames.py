"""Where label and prediction files live beside their image.

``cells.tif`` -> ``cells_seg.npy`` (labels, as the upstream cellpose GUI names them),
``cells_pred.npy`` (predictions), and for one frame of a multi-frame file
``cells__S0_T1_seg.npy``. ``cells_masks.tif`` + ``cells_classes.tif`` pairs are read too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

LabelKind = Literal["seg", "pred"]

#: Endings of files that hold labels, predictions or other derived data, never images.
DERIVED_SUFFIXES = ("_seg.npy", "_pred.npy", "_flows.tif", "_cp_masks.png", "_cp_outlines.txt", "_outlines.png")
_DERIVED_STEM = re.compile(r"_(masks|classes|cp_masks|flows|outlines)$", re.IGNORECASE)
_MULTI_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr")


def image_stem(image_path: str | Path) -> str:
    """File name without its image extension (``a.ome.tif`` -> ``a``)."""
    name = Path(image_path).name
    for ext in _MULTI_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def label_path(image_path: str | Path, frame: str = "", kind: LabelKind = "seg") -> Path:
    """Path of the label (``kind="seg"``) or prediction (``"pred"``) file of one frame of an image."""
    image_path = Path(image_path)
    stem = image_stem(image_path) + (f"__{frame}" if frame else "")
    return image_path.with_name(f"{stem}_{kind}.npy")


def masks_tiff_pair(image_path: str | Path) -> tuple[Path, Path] | None:
    """The ``_masks``/``_classes`` TIFF pair of an image, if the masks file exists."""
    image_path = Path(image_path)
    stem = image_stem(image_path)
    for ext in (".tif", ".tiff", ".png"):
        masks = image_path.with_name(f"{stem}_masks{ext}")
        if masks.exists():
            return masks, image_path.with_name(f"{stem}_classes{ext}")
    return None


def is_derived(path: str | Path) -> bool:
    """Whether *path* is a label, prediction or other derived file rather than an image."""
    name = Path(path).name.lower()
    if name.endswith(DERIVED_SUFFIXES):
        return True
    return bool(_DERIVED_STEM.search(image_stem(name)))
