"""Annotation history: append on save, preview, restore, delta storage, retention, crashes, the CLI."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mcp_core import history
from mcp_core.errors import LabelFileError, ParameterError
from mcp_core.labels import LabelSet, load_labels, save_labels
from mcp_core.labels.npyfile import read_label_dict
from mcp_core.synthetic import make_sample
from test_cli_core import run_cli

DAY = 86400.0


def _squares(n: int = 2, size: int = 64) -> LabelSet:
    masks = np.zeros((size, size), np.uint16)
    for i in range(n):
        masks[2 + 10 * i: 8 + 10 * i, 2:8] = i + 1
    return LabelSet(masks, class_names=["unassigned", "normal", "mitotic"])


def _same(a: LabelSet, b: LabelSet) -> bool:
    return (np.array_equal(a.masks, b.masks) and np.array_equal(a.classes, b.classes)
            and a.class_names == b.class_names and a.class_colors == b.class_colors)


def test_every_save_appends_a_version_with_author_and_summary(tmp_path):
    path = tmp_path / "img_seg.npy"
    ls = _squares()
    save_labels(path, ls)
    ls.add_polygon([[40, 40], [40, 50], [50, 50], [50, 40]])
    save_labels(path, ls)
    save_labels(path, ls)  # unchanged: no new version
    ls.delete([1])
    ls.assign_class([2, 3], 2)
    save_labels(path, ls, action="model run with tiny", source="job 42")
    found = history.versions(path)
    assert [v.n for v in found] == [1, 2, 3]
    assert [v.action for v in found] == ["first version: 2 object(s)", "drew 1",
                                         "model run with tiny: deleted 1, assigned 2 to 'mitotic'"]
    assert found[2].source == "job 42" and found[2].objects == 2
    assert {v.author for v in found} == {getpass.getuser()}
    assert found[1].base == 1 and found[0].base is None  # a delta on its predecessor
    assert "masks" in read_label_dict(path)  # the label file itself stays an ordinary upstream file
    assert not list(tmp_path.glob("*_pred.npy")) and not history.versions(save_labels(tmp_path / "x_pred.npy", ls))


def test_preview_changes_and_restore(tmp_path):
    path = tmp_path / "img_seg.npy"
    first = _squares(3)
    save_labels(path, first)
    ls = first.copy()
    ls.delete([2])
    ls.assign_class([1], 1)
    save_labels(path, ls)
    old = history.load_version(path, 1)
    assert _same(old, first)
    diff = history.changes(old, history.load_version(path, 2))
    assert diff.deleted.tolist() == [2] and diff.reclassed.tolist() == [1] and not len(diff.added)
    v = history.restore(path, 1)
    assert v.n == 3 and v.action.startswith("restored version 1: drew 1")
    assert _same(load_labels(path), first)
    with pytest.raises(ParameterError, match="no version 9"):
        history.load_version(path, 9)


def test_deltas_are_small_and_chains_bounded(tmp_path):
    ls = make_sample(0, shape=(512, 512))[1]
    path = tmp_path / "big_seg.npy"
    save_labels(path, ls)
    for k in range(history.KEY_EVERY + 2):
        ls.add_polygon([[k * 20, 500], [k * 20, 508], [k * 20 + 8, 508]])
        save_labels(path, ls)
    found = history.versions(path)
    store = history.store_of(path)
    size = {v.n: history._blob_file(store, v.blob).stat().st_size for v in found}
    assert size[2] * 10 < size[1]  # one small edit costs a small fraction of the whole
    assert max(history._depth(v, {u.n: u for u in found}) for v in found) < history.KEY_EVERY
    assert any(v.base is None for v in found[1:])  # a key version came round again
    assert _same(history.load_version(path, found[-1].n), ls)


def _six_am(days_ago: int) -> float:
    """06:00 UTC, *days_ago* days before today."""
    return (time.time() // DAY - days_ago) * DAY + 6 * 3600


def test_retention_keeps_the_last_days_then_one_per_day(tmp_path):
    path = tmp_path / "img_seg.npy"
    ls = _squares(1)
    expected = {}
    stamps = [_six_am(10) + h * 3600 for h in range(3)] + [_six_am(9)] + [_six_am(2) + m * 60 for m in range(3)]
    for i, t in enumerate(stamps):
        ls.add_polygon([[50, 2 + 3 * i], [50, 4 + 3 * i], [52, 4 + 3 * i]])
        expected[history.record(path, ls, now=t).n] = ls.copy()
        if t == stamps[3]:
            assert [v.n for v in history.versions(path)] == [1, 2, 3, 4]  # all within 7 days of that save
    now = _six_am(0)
    kept = [v.n for v in history.versions(path)]
    assert kept == [3, 4, 5, 6, 7]  # pruned by the saves: day -10 keeps its last version; the last 7 days all
    for n in kept:
        assert _same(history.load_version(path, n), expected[n])
    assert history.prune(path, now=now) == 0
    objects = history.store_of(path) / "objects"
    old = time.time() - 2 * history.ORPHAN_GRACE_S
    for blob in objects.glob("*/*"):
        os.utime(blob, (old, old))
    blobs_before = len(list(objects.glob("*/*")))
    history.prune(path, now=now + 30 * DAY)  # a month later: one version per day
    found = history.versions(path)
    assert [v.n for v in found] == [3, 4, 7]
    assert len(list(objects.glob("*/*"))) == len({v.blob for v in found}) < blobs_before  # orphans removed
    for v in found:
        assert _same(history.load_version(path, v.n), expected[v.n])


def test_retention_never_drops_a_version_a_trained_model_references(tmp_path):
    path = tmp_path / "img_seg.npy"
    ls = _squares(1)
    expected = {}
    for i, t in enumerate([_six_am(20) + h * 3600 for h in range(3)] + [_six_am(19)]):
        ls.add_polygon([[50, 2 + 3 * i], [50, 4 + 3 * i], [52, 4 + 3 * i]])
        expected[history.record(path, ls, now=t).n] = ls.copy()
        if i == 0:  # a model is trained on the first version of day -20
            assert history.pin_current(path, tmp_path / "m1.pth") == {"annotation_version": 1,
                                                                        "annotation_state": history.versions(path)[0].state}
    assert history.pin_current(path, "m2.pth")["annotation_version"] == 4
    assert history.pin_current(path, "m2.pth")["annotation_version"] == 4  # pinning twice changes nothing
    assert history.prune(path, now=_six_am(0)) == 1  # only version 2: not the day's last, and no model's
    assert [v.n for v in history.versions(path)] == [1, 3, 4]
    for n in (1, 3, 4):
        assert _same(history.load_version(path, n), expected[n])
    pins = history.pinned_by(path)
    assert pins == {history.versions(path)[0].state: [str(tmp_path / "m1.pth")],
                    history.versions(path)[2].state: ["m2.pth"]}
    out = run_cli("history", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].endswith("(trained m1.pth)") and lines[3].endswith("(trained m2.pth)") and "trained" not in lines[2]

    history._pins_file(path).write_text("[not json")  # an unreadable pin file: nothing is pruned, nothing pinned
    ls.add_polygon([[40, 40], [40, 44], [44, 44]])
    history.record(path, ls, now=_six_am(0))
    assert history.prune(path, now=_six_am(0) + 60 * DAY) == 0 and len(history.versions(path)) == 4
    assert history.pin_current(path, "m3.pth")["annotation_version"] == 5
    with pytest.raises(LabelFileError, match="pins of img_seg.npy are unreadable"):
        history.pinned_by(path)


def test_a_torn_log_line_is_skipped_and_the_next_save_goes_on(tmp_path):
    path = tmp_path / "img_seg.npy"
    ls = _squares()
    save_labels(path, ls)
    log_file = history._log_file(path)
    with open(log_file, "ab") as fh:
        fh.write(b'{"n": 2, "time": 1.0, "auth')
    assert [v.n for v in history.versions(path)] == [1]
    ls.delete([1])
    save_labels(path, ls)
    assert [v.n for v in history.versions(path)] == [1, 2]
    assert _same(history.load_version(path, 2), ls)


KILLED_SAVER = """
import sys, time
import numpy as np
from mcp_core import history
from mcp_core.labels import LabelSet, save_labels

path = sys.argv[1]
masks = np.zeros((64, 64), np.uint16); masks[2:8, 2:8] = 1; masks[20:30, 20:30] = 2
ls = LabelSet(masks)
save_labels(path, ls)
def torn_append(log_file, version):
    with open(log_file, "ab") as fh:
        fh.write(b'{"n": 2, "time": ')
        fh.flush()
    print("APPENDING", flush=True)
    time.sleep(60)
history._append = torn_append
ls.delete([1])
save_labels(path, ls)
"""


def test_killed_mid_save_keeps_the_label_file_and_a_usable_history(tmp_path):
    path = tmp_path / "img_seg.npy"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "APPENDING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.stdout.close()
    current = load_labels(path)
    assert current.ids.tolist() == [2]  # the label file was in place before the history was touched
    assert [v.n for v in history.versions(path)] == [1]
    save_labels(path, current)  # the next save records what the killed one could not
    found = history.versions(path)
    assert [v.n for v in found] == [1, 2] and found[1].action == "deleted 1"
    assert _same(history.load_version(path, 2), current)
    assert history.load_version(path, 1).ids.tolist() == [1, 2]


def test_history_command_lists_and_restores(tmp_path):
    image = tmp_path / "cells.tif"
    image.write_bytes(b"")  # the command only needs the name to find cells_seg.npy
    path = tmp_path / "cells_seg.npy"
    ls = _squares(2)
    save_labels(path, ls)
    ls.delete([2])
    save_labels(path, ls)
    out = run_cli("history", str(image), "--restore", "1")
    assert out.returncode == 0, out.stderr
    assert "as version 3" in out.stdout and load_labels(path).ids.tolist() == [1, 2]
    out = run_cli("history", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and "restored version 1: drew 1" in lines[3] and getpass.getuser()[:10] in lines[1]
    out = run_cli("history", str(image), "--restore", "7")
    assert out.returncode == 2 and "no version 7" in out.stderr


def test_a_trained_model_records_the_annotation_versions_it_saw(tmp_path):
    import json

    from mcp_core.catalog import sidecar_path
    from mcp_core.params import TrainParams
    from mcp_core.synthetic import write_demo_project
    from mcp_core.train import train
    from test_train import FAST

    folder = write_demo_project(tmp_path / "d", n_images=2, n_labelled=2, shape=(128, 128))
    edited = load_labels(folder / "demo_02_seg.npy")
    edited.delete([int(edited.ids[0])])
    save_labels(folder / "demo_02_seg.npy", edited)
    result = train(folder, TrainParams(**{**FAST, "batch_size": 2}, epochs=1, test_ratio=0.0,
                                       save_path=str(tmp_path / "m.pth")))
    rows = json.loads(sidecar_path(result.model_path).read_text())["data"]["train"]
    got = {r["file"]: (r["annotation_version"], r["annotation_state"]) for r in rows}
    for name, n in (("demo_01.tif", 1), ("demo_02.tif", 2)):
        v = history.current_version(folder / name.replace(".tif", "_seg.npy"))
        assert got[name] == (n, v.state) and v.n == n
        assert history.pinned_by(folder / name.replace(".tif", "_seg.npy")) == {v.state: [result.model_path]}


def test_a_damaged_store_is_reported_and_the_next_save_stands_alone(tmp_path):
    path = tmp_path / "img_seg.npy"
    ls = _squares()
    save_labels(path, ls)
    for blob in (history.store_of(path) / "objects").glob("*/*"):
        blob.write_bytes(b"garbage")
    history._CACHE.clear()
    with pytest.raises(LabelFileError, match="damaged"):
        history.load_version(path, 1)
    ls.delete([1])
    save_labels(path, ls)  # the label file is written; its version is stored whole
    v = history.current_version(path)
    assert v.n == 2 and v.base is None and v.action == "stored whole: 1 object(s)"
    assert _same(history.load_version(path, 2), ls)
    log_file = history._log_file(path)
    log_file.write_text(log_file.read_text().replace(v.blob, "../../../etc/passwd"))
    history._CACHE.clear()
    with pytest.raises(LabelFileError, match="no valid blob"):
        history.load_version(path, 2)
