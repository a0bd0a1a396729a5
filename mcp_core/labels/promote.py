"""Promote predictions to labels: ``_pred.npy`` becomes ``_seg.npy``, never clobbering a person's work."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MCPError
from ..file_version import FileVersion, write_unless_changed
from ..filenames import label_path
from .files import load_labels, save_labels


@dataclass
class PromoteResult:
    """What :func:`promote_predictions` did, file by file (label files' paths)."""

    copied: list[Path] = field(default_factory=list)
    #: Label files left as they were: the user chose not to replace them, or they were edited after the prediction.
    kept: list[Path] = field(default_factory=list)
    #: Predictions with no object: promoting them would mark an image labelled with nothing on it.
    empty: list[Path] = field(default_factory=list)
    #: ``(prediction file, reason)``: unreadable, refused, or its label file changed while promoting.
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence for a notification or the CLI."""
        parts = [f"Promoted {len(self.copied)} prediction(s) to labels"]
        if self.kept:
            parts.append(f"kept {len(self.kept)} existing label file(s)")
        if self.empty:
            parts.append(f"skipped {len(self.empty)} empty prediction(s)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed ({self.failed[0][0].name}: {self.failed[0][1]})")
        return "; ".join(parts) + "."


def promote_predictions(frames: Iterable[tuple[str | os.PathLike, str]], replace: bool = False) -> PromoteResult:
    """Copy each frame's ``_pred.npy`` to its ``_seg.npy`` (atomically, with an annotation-history version).

    Parameters
    ----------
    frames
        ``(image path, frame)`` pairs; those without a prediction file are passed over.
    replace
        Replace existing label files too. Even then a label file saved after its prediction is kept
        (someone corrected it since), and one that changes while this runs is never overwritten.
    """
    result = PromoteResult()
    for image, frame in frames:
        pred, seg = label_path(image, frame, "pred"), label_path(image, frame, "seg")
        if not pred.exists():
            continue
        seg_version = FileVersion.of(seg)
        if seg_version is not None and (not replace or seg.stat().st_mtime > pred.stat().st_mtime):
            result.kept.append(seg)
            continue
        try:
            labels = load_labels(pred)
            if labels.count == 0:
                result.empty.append(pred)
                continue
            write_unless_changed(seg, seg_version, lambda: save_labels(seg, labels, image_path=image,
                                                                       action="promoted the prediction"))
        except MCPError as exc:
            result.failed.append((pred, str(exc)))
            continue
        result.copied.append(seg)
    return result
