"""Unreadable files and folders get one line naming the path and the reason (exit 1); the app keeps running."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from mcp_app.cli import main


@pytest.fixture
def files(tmp_path):
    """A good TIFF, a truncated one, garbage, an empty file, a broken link and an all-NaN image."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", np.arange(32 * 32, dtype=np.uint16).reshape(32, 32), description="x" * 64,
                     resolution=(2.0, 2.0))
    whole = (folder / "good.tif").read_bytes()
    (folder / "trunc.tif").write_bytes(whole[:200])  # header and tags, no pixels
    (folder / "garbage.tif").write_bytes(b"II*\x00garbage" * 10)
    (folder / "empty.tif").write_bytes(b"")
    (folder / "broken.tif").symlink_to(folder / "nowhere.tif")
    tifffile.imwrite(folder / "nan.tif", np.full((64, 64), np.nan, np.float32))
    return folder


def no_spill(err: str) -> None:
    assert not re.search(r"^<?Tiff|^<tifffile", err, re.M), f"tifffile's log reached stderr: {err}"


@pytest.mark.parametrize("name,reason", [("garbage.tif", "holds no image data"), ("empty.tif", "is empty"),
                                         ("broken.tif", "does not exist"), ("missing.tif", "does not exist"),
                                         (".", "is a folder")])
def test_info_reports_each_bad_file_in_one_line_and_goes_on(files, capsys, name, reason):
    assert main(["info", str(files / name), str(files / "good.tif")]) == 1
    out, err = capsys.readouterr()
    no_spill(err)
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and reason in line and str(files / name).rstrip("/.") in line
    assert "good.tif: axes YXC" in out


def test_info_folds_tifffile_warnings_into_its_line(files, capsys):
    main(["info", str(files / "trunc.tif")])
    out, err = capsys.readouterr()
    no_spill(err)
    assert "trunc.tif" in out + err and "TiffFileError" in out + err


def test_measure_of_damaged_files_does_not_spill_and_exits_1(files, capsys):
    assert main(["measure", str(files), "-p", "basic", "--source", "seg", "-q"]) == 1
    _, err = capsys.readouterr()
    no_spill(err)
    assert "garbage.tif holds no image data" in err and "empty.tif is empty" in err
    assert main(["measure", str(files / "missing.tif"), "-p", "basic", "-q"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {files / 'missing.tif'} does not exist."


def test_segment_warns_about_an_all_nan_image_and_skips_unreadable_ones(files, tmp_path, capsys):
    from mcp_core.model import build_model

    model = tmp_path / "tiny.pth"
    build_model("tiny", ["unassigned", "cell"], device="cpu", seed=0).save(model)
    rc = main(["segment", "--model", str(model), "--input", str(files / "nan.tif"), str(files / "trunc.tif"),
               str(files / "garbage.tif"), "--output", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
    _, err = capsys.readouterr()
    no_spill(err)
    assert rc == 0
    assert "nan.tif is all NaN/inf" in err
    assert re.search(r"Skipped \S*trunc\.tif: ", err) and re.search(r"Skipped \S*garbage\.tif: ", err)


def test_app_refuses_a_folder_it_cannot_open_in_one_line(files, capsys):
    assert main([str(files / "good.tif"), "--no-browser"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {files / 'good.tif'} is not a folder."


async def test_the_app_keeps_running_when_an_image_cannot_be_opened(user, files, tmp_path, monkeypatch):
    import re as regex

    from mcp_app import compute, pages
    from mcp_app.project import Project
    from mcp_app.state import AppState
    from mcp_app.workspace import OPEN_WORKSPACES
    from mcp_core.backend import LocalBackend
    from waiting import apoll

    for name in ("broken.tif", "empty.tif", "trunc.tif", "nan.tif"):
        (files / name).unlink()
    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    state = AppState(project=Project.open(files), backend=LocalBackend(tmp_path / "home"))
    pages.register(state)
    user.javascript_rules[regex.compile(r"""(?s).*runMethod\(.*["'](load|setImage)["'].*""")] = \
        lambda m: {"width": 32, "height": 32}
    await user.open("/trainer")
    await user.should_see("Cannot open garbage.tif", retries=100)
    [ws] = [w for w in OPEN_WORKSPACES if w.project.folder == files.resolve()]
    await apoll(lambda: ws.index == 1, "the page to pass over garbage.tif")
    assert ws.editor.item.path.name == "good.tif" and ws.unreadable.keys() == {0}
    with pytest.raises(ValueError, match="all NaN/inf"):
        await compute.segment(state.backend, [np.full((8, 8, 1), np.inf, np.float32)], None)
    with pytest.raises(ValueError, match="is not a folder"):
        state.open_folder(files / "good.tif")
