"""Promoting predictions to labels: copied, kept, empty and refused files, each counted."""

from __future__ import annotations

import os

import numpy as np

from mcp_core.filenames import label_path
from mcp_core.labels import LabelSet, load_labels, save_labels
from mcp_core.labels.promote import promote_predictions


def labels(n: int) -> LabelSet:
    ls = LabelSet(np.zeros((32, 32), np.uint16), class_names=["unassigned", "A"])
    for i in range(n):
        ls.add_polygon([(2 + 8 * i, 2), (7 + 8 * i, 2), (7 + 8 * i, 7), (2 + 8 * i, 7)], 1)
    return ls


def age(path, seconds: float) -> None:
    """Make *path* look *seconds* older than now."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_promote_copies_keeps_skips_and_reports(tmp_path):
    images = [tmp_path / f"{name}.tif" for name in ("new", "labelled", "corrected", "empty", "hostile")]
    for image, n in zip(images, (2, 3, 1, 0, 1), strict=True):
        save_labels(label_path(image, "", "pred"), labels(n), image_path=image)
    save_labels(label_path(images[1], "", "seg"), labels(1), image_path=images[1])  # older labels
    age(label_path(images[1], "", "seg"), 60)
    save_labels(label_path(images[2], "", "seg"), labels(3), image_path=images[2])  # corrected after the prediction
    age(label_path(images[2], "", "pred"), 60)
    np.save(label_path(images[4], "", "pred"), {"masks": np.zeros((4, 4)), "x": print}, allow_pickle=True)
    frames = [(p, "") for p in [*images, tmp_path / "no_prediction.tif"]]

    first = promote_predictions(frames)
    assert first.copied == [label_path(images[0], "", "seg")]
    assert load_labels(first.copied[0]).count == 2
    assert first.kept == [label_path(images[1], "", "seg"), label_path(images[2], "", "seg")]
    assert first.empty == [label_path(images[3], "", "pred")] and not label_path(images[3], "", "seg").exists()
    assert [p for p, _ in first.failed] == [label_path(images[4], "", "pred")]
    assert not label_path(images[4], "", "seg").exists()
    assert first.summary().startswith("Promoted 1 prediction(s) to labels; kept 2 existing label file(s); "
                                      "skipped 1 empty prediction(s); 1 failed (hostile_pred.npy:")

    # Replacing: older labels give way to the prediction; labels saved after it (corrected, or promoted in the
    # first round) never do.
    second = promote_predictions(frames[:3], replace=True)
    assert second.copied == [label_path(images[1], "", "seg")] and load_labels(second.copied[0]).count == 3
    assert second.kept == [label_path(images[0], "", "seg"), label_path(images[2], "", "seg")]
    assert load_labels(label_path(images[2], "", "seg")).count == 3
