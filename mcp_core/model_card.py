"""Model cards: what a trained model is, how it was trained, on which annotations, and how well it did.

Built from the model's JSON sidecar only (no torch), as Markdown: used as the documentation
of a bioimage.io package and shown by the app.
"""

from __future__ import annotations

import os
from typing import Any

from .catalog import read_sidecar


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _curve(values: list, width: int = 8) -> str:
    """A few evenly spaced points of a loss curve."""
    points = [v for v in values if v is not None]
    if not points:
        return "-"
    step = max(1, len(points) // width)
    picked = points[::step][:width] + ([points[-1]] if (len(points) - 1) % step else [])
    return " → ".join(f"{v:.3g}" for v in picked)


def card_markdown(model_path: str | os.PathLike, name: str | None = None) -> str:
    """The model card of a saved model as Markdown.

    Sections: summary (classes, architecture, channels, diameter), training (parameters, loss
    curves, state), evaluation (AP@0.5, error rate, class accuracy, per-class precision, recall,
    F1), data (every frame with its content hash and annotation-history version), versions.
    Sections the sidecar has nothing for are left out.
    """
    meta = read_sidecar(model_path)
    arch = meta.get("architecture") or {}
    classes = list(meta.get("class_names") or [])
    colors = list(meta.get("class_colors") or [])
    title = name or os.path.splitext(os.path.basename(os.fspath(model_path)))[0]
    lines = [f"# {title}", "",
             "A multi-class CellposeSAM model trained with MultiCellPose: instance masks (cellpose flows and cell "
             "probability) and one class per object.", "",
             "## Summary", ""]
    lines += _table(["", ""], [
        ["architecture", f"{arch.get('name', '?')} (tiles of {arch.get('bsize', '?')} px, "
                         f"patch {arch.get('ps', '?')})"],
        ["base model", meta.get("base_model", "?")],
        ["classes", ", ".join(f"{n} ({c})" for n, c in zip(classes, colors)) or "none"],
        ["output channels", ", ".join(meta.get("channel_order") or [])],
        ["image channels used", meta.get("channels") or "the first three"],
        ["object diameter", f"{meta.get('diameter', '?')} px (network scale {meta.get('diam_mean', '?')} px)"],
        ["state", meta.get("state", "saved")],
    ])
    training = meta.get("training") or {}
    if training:
        lines += ["", "## Training", ""]
        lines += _table(["parameter", "value"], [[k, v] for k, v in sorted(training.items()) if v is not None])
        losses = meta.get("losses") or {}
        lines += ["", f"Epochs done: {meta.get('epochs_done', '?')}.",
                  f"Training loss: {_curve(losses.get('train') or [])}.",
                  f"Test loss: {_curve(losses.get('test') or [])}."]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines += ["", "## Evaluation on the test split", ""]
        lines += _table(["metric", "value"], [[k, _fmt(metrics[k])] for k in
                                               ("ap50", "error_rate", "class_accuracy", "tp", "fp", "fn", "n_images")
                                               if k in metrics])
        per_class = metrics.get("per_class") or {}
        if per_class:
            lines += ["", *_table(["class", "precision", "recall", "F1", "support"],
                                  [[n, _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]), s["support"]]
                                   for n, s in per_class.items()])]
    data = meta.get("data") or {}
    if data:
        lines += ["", "## Data", "", f"Digest of all frames: `{data.get('digest', '?')}`.", ""]
        rows = [[part, r.get("file", ""), r.get("frame", "") or "-", str(r.get("sha256", ""))[:12],
                 r.get("annotation_version", "-")]
                for part in ("train", "test", "replay") for r in data.get(part) or []]
        lines += _table(["split", "file", "frame", "sha256", "annotation version"], rows)
    versions = meta.get("versions") or {}
    if versions:
        lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"
