"""Next image: the editor reads and encodes the neighbours ahead, and never shows a stale read."""

from __future__ import annotations

import gzip
import threading

import numpy as np
import pytest

import mcp_app.editor as editor_module
from mcp_app.editor import Editor
from mcp_app.project import Item, Project
from mcp_core.filenames import label_path
from mcp_core.labels import LabelSet, load_labels, save_labels
from mcp_core.synthetic import write_demo_project
from waiting import poll


@pytest.fixture
def project(tmp_path):
    write_demo_project(tmp_path, n_images=3, n_labelled=3, shape=(96, 96))
    return Project.open(tmp_path)


@pytest.fixture
def recorded(monkeypatch):
    """Which thread opened which image, and how many label encodings were made."""
    reads: list[tuple[str, str]] = []
    encodings: list[int] = []
    open_image, encode_labels = editor_module.open_image, editor_module.encode_labels

    def recording_open(path):
        reads.append((path.name, threading.current_thread().name))
        return open_image(path)

    def recording_encode(masks):
        encodings.append(masks.size)
        return encode_labels(masks)

    monkeypatch.setattr(editor_module, "open_image", recording_open)
    monkeypatch.setattr(editor_module, "encode_labels", recording_encode)
    return reads, encodings


def test_a_prefetched_item_opens_as_read_and_encoded_ahead(project, recorded):
    reads, encodings = recorded
    ed = Editor(project)
    first, second = Item(project.folder / "demo_01.tif"), Item(project.folder / "demo_02.tif")
    ed.open(first)
    ed.prefetch([second])
    ed.open(second)
    assert reads[-1][0] == "demo_02.tif" and reads[-1][1].startswith("prefetch")  # not read while the user waited
    n = len(encodings)
    blob = ed.label_bytes()
    assert len(encodings) == n  # encoded once, ahead
    np.testing.assert_array_equal(np.frombuffer(gzip.decompress(blob), "<u2").reshape(96, 96),
                                  load_labels(label_path(second.path)).masks)
    ed.delete([int(ed.labels.ids[0])])
    after = np.frombuffer(gzip.decompress(ed.label_bytes()), "<u2").reshape(96, 96)
    np.testing.assert_array_equal(after, ed.labels.masks)  # an edit makes the next encoding anew
    assert len(encodings) == n + 1
    ed.close()


def test_labels_changed_on_disk_after_the_read_ahead_are_read_again(project, recorded):
    reads, _ = recorded
    ed = Editor(project)
    second = Item(project.folder / "demo_02.tif")
    ed.prefetch([second])
    poll(lambda: ed._ahead.loaded((second.path, "")), "the read ahead of demo_02")
    masks = np.zeros((96, 96), np.uint16)
    masks[5:9, 5:9] = 1
    save_labels(label_path(second.path), LabelSet(masks, np.array([0, 2]), project.class_names),
                image_path=second.path)  # a job or another tab writes the file
    ed.open(second)
    assert ed.labels.count == 1 and ed.labels.classes.tolist() == [0, 2]
    np.testing.assert_array_equal(np.frombuffer(gzip.decompress(ed.label_bytes()), "<u2").reshape(96, 96), masks)
    assert ed.file_version is not None and not ed.dirty
    ed.delete([1])
    assert ed.save() == label_path(second.path)  # no conflict: the version kept is the one read last
    ed.close()
