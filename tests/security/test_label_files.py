"""Label files never run code: a pickle that would create a marker file is refused everywhere it is read."""

from __future__ import annotations

import http.cookiejar
import io
import os
import pickle
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.browser import App
from waiting import apoll
from mcp_core.errors import LabelFileError
from mcp_core.labels import load_labels
from mcp_core.labels.npyfile import read_label_dict, read_npy


class Payload:
    """Unpickling this runs ``func(*args)``: how a hostile label file runs code."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def attacks(marker: Path) -> dict[str, object]:
    """Payloads that each create *marker* when unpickled with ``np.load(allow_pickle=True)``."""
    return {
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "posix.system": Payload(os.system, f"touch {marker}"),
        "subprocess.call": Payload(subprocess.call, ["touch", str(marker)]),
        "pathlib.Path": Payload(Path.touch, Path(marker)),
    }


def write_poisoned(path: Path, payload: object, *, nested: bool = True) -> Path:
    """An otherwise valid label dict carrying *payload* (inside a list, or as the whole file)."""
    data = {"masks": np.zeros((8, 8), np.uint16), "flows": [np.zeros((2, 8, 8)), payload]} if nested else payload
    np.save(path, np.array(data, dtype=object) if nested else payload, allow_pickle=True)
    return path


def poisoned_project(folder: Path, marker: Path) -> Path:
    """A demo project whose label and prediction files of the first image carry a marker payload.

    The second image has good labels and predictions, so commands have something to go on with.
    """
    from mcp_core.synthetic import write_demo_project

    write_demo_project(folder, n_images=3, n_labelled=2, shape=(64, 64))
    first, second = sorted(folder.glob("*_seg.npy"))[:2]
    shutil.copy(second, second.with_name(second.name.replace("_seg", "_pred")))
    write_poisoned(first, attacks(marker)["builtins.exec"])
    write_poisoned(first.with_name(first.name.replace("_seg", "_pred")), attacks(marker)["posix.system"])
    return first


@pytest.mark.parametrize("name", ["builtins.exec", "posix.system", "subprocess.call", "pathlib.Path"])
@pytest.mark.parametrize("nested", [True, False])
def test_a_code_running_pickle_is_refused_naming_file_and_global(tmp_path, name, nested):
    marker = tmp_path / "marker"
    path = write_poisoned(tmp_path / "cells_seg.npy", attacks(marker)[name], nested=nested)
    with pytest.raises(LabelFileError) as info:
        load_labels(path)
    assert str(path) in str(info.value) and "refused" in str(info.value)
    assert name.split(".")[-1] in str(info.value) or "Path" in str(info.value)
    assert not marker.exists()


def test_upstream_cellpose_seg_file_still_loads(tmp_path):
    from cellpose import io as cellpose_io

    masks = np.zeros((32, 40), np.uint16)
    masks[2:10, 3:12], masks[15:25, 20:30] = 1, 2
    image = np.random.default_rng(0).random((32, 40)).astype(np.float32)
    flows = [np.zeros((32, 40, 3), np.uint8), np.zeros((2, 32, 40), np.float32), np.zeros((32, 40), np.float32)]
    cellpose_io.masks_flows_to_seg(image, masks, flows, str(tmp_path / "up.tif"))
    ls = load_labels(tmp_path / "up_seg.npy")
    assert np.array_equal(ls.masks, masks) and ls.count == 2 and set(ls.classes[1:].tolist()) == {0}
    assert read_label_dict(tmp_path / "up_seg.npy")["filename"] == str(tmp_path / "up.tif")


def test_our_files_and_numpy_values_round_trip(tmp_path):
    from mcp_core.labels import LabelSet, save_labels

    masks = np.zeros((16, 16), np.uint16)
    masks[2:6, 2:6] = 1
    path = save_labels(tmp_path / "a_seg.npy", LabelSet(masks, np.array([0, 1], np.uint16), ["unassigned", "cell"]))
    assert load_labels(path).class_names == ["unassigned", "cell"]
    values = {"masks": masks, "f": np.float32(1.5), "c": 2j, "s": {1, 2}, "fs": frozenset({3}), "b": b"x",
              "t": (1, None, True), "st": np.array(["a", "b"]), "rec": np.zeros(2, [("x", "f4"), ("y", "i2")])}
    for protocol in (2, 3, 4, 5):
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(values, dtype=object), buf, protocol=protocol)
        (tmp_path / "v.npy").write_bytes(buf.getvalue())
        got = read_label_dict(tmp_path / "v.npy")
        assert got["f"] == np.float32(1.5) and got["s"] == {1, 2} and got["rec"].dtype.names == ("x", "y")
    assert np.array_equal(read_npy(tmp_path / "a_seg.npy").item()["masks"], masks)


def test_npz_named_npy_is_refused(tmp_path):
    path = tmp_path / "cells_seg.npy"
    np.savez(path.with_suffix(".npz"), masks=np.zeros((4, 4), np.uint16))
    shutil.move(path.with_suffix(".npz"), path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(LabelFileError, match="NPZ archive"):
        load_labels(path)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00", b"garbage that is not numpy", None])
def test_damaged_files_raise_label_file_errors(tmp_path, content):
    path = tmp_path / "cells_seg.npy"
    if content is None:  # a valid header with a truncated pickle
        np.save(path, np.array({"masks": np.zeros((50, 50))}, dtype=object), allow_pickle=True)
        content = path.read_bytes()[:-40]
    path.write_bytes(content)
    with pytest.raises(LabelFileError, match=str(path)):
        load_labels(path)


def test_project_open_and_class_rename_leave_a_poisoned_file_alone(tmp_path):
    from mcp_app.project import Project

    marker = tmp_path / "marker"
    first = poisoned_project(tmp_path / "project", marker)
    before = first.read_bytes()
    proj = Project.open(tmp_path / "project")
    changed = proj.rename_class(1, "renamed")
    assert first not in changed and first.read_bytes() == before
    assert not marker.exists()


async def test_trainer_marks_a_poisoned_image_unreadable_and_never_writes_it(user, tmp_path, monkeypatch):
    from mcp_app import pages
    from mcp_app.project import Project
    from mcp_app.state import AppState
    from mcp_core.backend import LocalBackend

    marker = tmp_path / "marker"
    first = poisoned_project(tmp_path / "project", marker)
    before = first.read_bytes()
    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    pages.register(AppState(project=Project.open(tmp_path / "project"), backend=LocalBackend(tmp_path / "home")))
    import re

    user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["'](load|setImage)["'].*""")] = \
        lambda m: {"width": 64, "height": 64}
    await user.open("/trainer")
    await user.should_see("refused", retries=100)
    from mcp_app.workspace import OPEN_WORKSPACES

    [ws] = [w for w in OPEN_WORKSPACES if w.project.folder == (tmp_path / "project").resolve()]
    assert 0 in ws.unreadable
    await apoll(lambda: ws.index == 1, "the page going on to the next image")
    ws.edit(lambda: ws.editor.delete([int(ws.editor.labels.ids[0])]))
    ws.flush_sync()
    await ws.step(-1)  # going back tries the refused file again, and stays where it is
    assert ws.index == 1 and ws.unreadable.keys() == {0}
    assert first.read_bytes() == before and not marker.exists()


def test_every_cli_command_refuses_the_payload_and_goes_on(tmp_path):
    from mcp_core.model import build_model

    marker = tmp_path / "marker"
    project = tmp_path / "project"
    first = poisoned_project(project, marker)
    model = tmp_path / "models" / "tiny.pth"
    build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=0).save(model)
    exe = str(Path(sys.executable).parent / "multicellpose")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | {
        "MULTICELLPOSE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    runs = {
        "info": [exe, "info", *map(str, sorted(project.glob("*.tif")))],
        "measure seg": [exe, "measure", str(project), "-p", "basic", "--source", "seg", "-o", str(tmp_path / "m.csv")],
        "measure pred": [exe, "measure", str(project), "-p", "basic", "--source", "pred", "-o", str(tmp_path / "p.csv")],
        "export": [exe, "export", str(project), "--format", "geojson", "--source", "seg", "--out", str(tmp_path / "ex")],
        "train": [exe, "train", "--train-dir", str(project), "--base-model", "tiny", "--epochs", "1", "--batch-size", "2",
                  "--bsize", "64", "--min-train-masks", "1", "--model-name", "t", "--save-path", str(tmp_path / "models"), "--quiet"],
        "segment": [exe, "segment", "--model", str(model), "--input", str(project), "--output", str(tmp_path / "seg"),
                    "--quiet"],
    }
    for name, argv in runs.items():
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert not marker.exists(), f"{name} ran the payload"
        if name in ("measure seg", "measure pred", "export", "train"):
            assert out.returncode == 0, f"{name} did not go on: {out.stderr}"
            assert first.name.replace("_seg", "_pred" if name == "measure pred" else "_seg") in out.stderr, name
            assert "refused" in out.stderr, name
        else:
            assert out.returncode == 0, f"{name}: {out.stderr}"
    app = App(project, tmp_path / "home")  # the app reads the folder's label files when it starts
    try:
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert browser.open(app.start_url.replace("/?", "/trainer?"), timeout=60).status == 200
    finally:
        app.stop()
    assert not marker.exists(), "the app ran the payload"
