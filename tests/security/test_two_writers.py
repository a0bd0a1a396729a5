"""Two tabs, one file: a save never silently overwrites what another tab, app or job wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcp_core.file_version import FileChangedError, FileVersion, write_unless_changed
from mcp_core.filenames import label_path
from mcp_core.labels import load_labels, save_labels


def two_tabs(project, kind="seg"):
    """Two editors (as two tabs or two apps have) on the first image of *project*."""
    from mcp_app.editor import Editor
    from mcp_app.project import Project

    tabs = [Editor(Project.open(project), kind) for _ in range(2)]
    item = tabs[0].project.items()[0]
    for tab in tabs:
        tab.open(item)
    return tabs


def delete_first(tab) -> int:
    target = int(tab.labels.ids[0])
    tab.delete([target])
    return target


def test_second_save_is_refused_then_reload_or_keep_mine(project):
    a, b = two_tabs(project)
    gone_a = delete_first(a)
    a.save()
    gone_b = int(b.labels.ids[-1])
    b.delete([gone_b])
    with pytest.raises(FileChangedError, match="changed on disk"):
        b.save()
    on_disk = load_labels(a.label_file)
    assert gone_a not in on_disk.ids and gone_b in on_disk.ids and b.dirty  # theirs kept, mine still here
    b.save(force=True)  # keep mine
    assert gone_a in load_labels(a.label_file).ids and gone_b not in load_labels(a.label_file).ids
    a.delete([int(a.labels.ids[-1])])
    with pytest.raises(FileChangedError):
        a.save()
    a.reload()  # reload theirs
    assert not a.dirty and gone_b not in a.labels.ids and gone_a in a.labels.ids
    a.delete([int(a.labels.ids[0])])
    assert a.save() == a.label_file  # after reloading, saving works again


def test_labels_created_elsewhere_after_opening_an_unlabelled_image(project):
    from mcp_app.editor import Editor
    from mcp_app.project import Project

    proj = Project.open(project)
    item = next(i for i in proj.items() if not proj.has_labels(i))
    a, b = Editor(proj, "seg"), Editor(Project.open(project), "seg")
    a.open(item)
    b.open(item)
    a.add_polygon([[5, 5], [30, 5], [30, 30], [5, 30]], 1)
    a.save()
    b.add_polygon([[40, 40], [60, 40], [60, 60], [40, 60]], 1)
    with pytest.raises(FileChangedError):
        b.save()


def test_a_job_rewriting_predictions_counts_as_another_writer(project):
    first = sorted(project.glob("*_seg.npy"))[0]
    pred = first.with_name(first.name.replace("_seg", "_pred"))
    pred.write_bytes(first.read_bytes())
    [analyzer] = two_tabs(project, "pred")[:1]
    fresh = load_labels(pred)
    fresh.delete([int(fresh.ids[0])])
    save_labels(pred, fresh)  # what a batch job does when it finishes
    analyzer.delete([int(analyzer.labels.ids[-1])])
    with pytest.raises(FileChangedError):
        analyzer.save()
    assert load_labels(pred).count == fresh.count


def test_rewriting_identical_bytes_is_not_a_change(tmp_path):
    path = tmp_path / "x_seg.npy"
    path.write_bytes(b"abc")
    version = FileVersion.of(path)
    path.write_bytes(b"abc")
    assert FileVersion.same(FileVersion.of(path), version)
    new = write_unless_changed(path, version, lambda: path.write_bytes(b"abcd"))
    assert new.size == 4 and new.sha256 != version.sha256
    with pytest.raises(FileChangedError):
        write_unless_changed(path, version, lambda: path.write_bytes(b"lost"))
    assert path.read_bytes() == b"abcd"


def test_class_list_edits_in_two_apps(project):
    from mcp_app.project import PROJECT_FILE, Project

    a, b = Project.open(project), Project.open(project)
    a.add_class("mine")
    with pytest.raises(FileChangedError, match=PROJECT_FILE):
        b.add_class("theirs")
    assert "theirs" not in b.class_names  # nothing changed on a refused edit
    names = [c["name"] for c in json.loads((project / PROJECT_FILE).read_text())["classes"]]
    assert "mine" in names
    with pytest.raises(FileChangedError):
        b.recolor_class(1, "#000000")
    b.read_classes()  # reload theirs
    assert "mine" in b.class_names
    b.add_class("theirs")
    with pytest.raises(FileChangedError):
        a.remove_class(1)
    a.save(force=True)  # keep mine
    assert "theirs" not in [c["name"] for c in json.loads((project / PROJECT_FILE).read_text())["classes"]]


def test_two_browser_tabs_editing_one_image(project, browser, tmp_path):
    from app.browser import App, until, wait
    from app.test_browser import CTRL, click

    app = App(project, tmp_path / "home")
    try:
        app.login(browser)
        seg = label_path(sorted(project.glob("*.tif"))[0])
        before = load_labels(seg)
        centre = {int(i): np.argwhere(before.masks == i).mean(axis=0) for i in before.ids}
        first, second, third = list(centre)[:3]
        tabs = []
        for _ in range(2):
            if tabs:
                browser.switch_to.new_window("tab")
            browser.get(app.url + "/trainer")
            wait(browser, "window.mcpCanvas && window.mcpLoadedAt", timeout=60)
            tabs.append(browser.current_window_handle)
        browser.switch_to.window(tabs[0])
        click(browser, centre[first][1], centre[first][0], CTRL)
        until(lambda: first not in load_labels(seg).ids, timeout=60)
        browser.switch_to.window(tabs[1])
        click(browser, centre[second][1], centre[second][0], CTRL)
        wait(browser, "[...document.querySelectorAll('.q-dialog')].some(d => d.innerText.includes('changed on disk')"
                      " && d.innerText.includes('Keep mine'))", timeout=60)
        reload_button = browser.find_element("xpath", "//*[normalize-space(text())='Reload theirs']")
        until(reload_button.is_displayed, timeout=30)
        on_disk = load_labels(seg)
        assert first not in on_disk.ids and second in on_disk.ids  # tab 1's save was not overwritten
        browser.save_screenshot(str(tmp_path / "conflict.png"))
        loaded = browser.execute_script("return window.mcpLoadedAt")
        reload_button.click()
        wait(browser, f"document.body.innerText.includes('Reloaded from disk') && window.mcpLoadedAt !== {loaded!r}"
                      " && !document.querySelector('.q-dialog__backdrop')", timeout=60)  # the dialog has faded out
        click(browser, centre[third][1], centre[third][0], CTRL)  # tab 2 now edits tab 1's version
        until(lambda: third not in load_labels(seg).ids, timeout=60)
        final = load_labels(seg)
        assert first not in final.ids and second in final.ids
    finally:
        app.stop()


@pytest.fixture
def page_user(user, project, tmp_path, monkeypatch):
    """The NiceGUI simulated user with the app's pages on *project* (canvas calls answered)."""
    import re

    from mcp_app import pages
    from mcp_app.project import Project
    from mcp_app.state import AppState
    from mcp_core.backend import LocalBackend

    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    pages.register(AppState(project=Project.open(project), backend=LocalBackend(tmp_path / "home")))
    user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["'](load|setImage)["'].*""")] = \
        lambda m: {"width": 96, "height": 96}
    return user


@pytest.mark.parametrize("page,kind", [("/trainer", "seg"), ("/analyzer", "pred")])
async def test_page_asks_and_keep_mine_overwrites(page_user, project, page, kind):
    """Another writer (a second app, or a job for predictions) changes the open file: the page asks."""
    from mcp_app.canvas import LabelCanvas
    from waiting import apoll

    first = sorted(project.glob("*_seg.npy"))[0]
    path = first.with_name(first.name.replace("_seg", f"_{kind}"))
    if kind == "pred":
        path.write_bytes(first.read_bytes())
    await page_user.open(page)
    await page_user.should_see("(1/3)")
    theirs = load_labels(path)
    gone_theirs, gone_mine = int(theirs.ids[0]), int(theirs.ids[-1])
    theirs.delete([gone_theirs])
    save_labels(path, theirs)
    page_user.find(LabelCanvas).trigger("delete", {"ids": [gone_mine]})
    await page_user.should_see("changed on disk", retries=100)
    assert gone_mine in load_labels(path).ids  # not overwritten
    page_user.find(marker="keep-mine").click()
    await apoll(lambda: gone_theirs in load_labels(path).ids and gone_mine not in load_labels(path).ids,
                "my version on disk after 'keep mine'")


async def test_class_list_changed_by_another_app_asks_then_reloads_theirs(page_user, project):
    from mcp_app.project import PROJECT_FILE, Project

    await page_user.open("/trainer")
    await page_user.should_see("(1/3)")
    other = Project.open(project)  # a second app on the same folder
    other.add_class("theirs")
    page_user.find("New class").type("mine")
    page_user.find(marker="add-class").click()
    await page_user.should_see("multicellpose.json was changed on disk", retries=100)
    assert "mine" not in (project / PROJECT_FILE).read_text()
    from mcp_app.workspace import OPEN_WORKSPACES
    from waiting import apoll

    [ws] = [w for w in OPEN_WORKSPACES if w.project.folder == project.resolve()]
    page_user.find(marker="classes-reload-theirs").click()
    await apoll(lambda: "theirs" in ws.project.class_names, "the class list reloaded from disk")
    assert "mine" not in ws.project.class_names and "theirs" in ws.editor.labels.class_names


def test_closing_a_page_mid_conflict_keeps_its_edits_aside(project, tmp_path, monkeypatch):
    from mcp_app.project import Project
    from mcp_app.workspace import Workspace

    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    a, ws = two_tabs(project)[0], Workspace(Project.open(project))
    ws.editor.open(a.item)
    delete_first(a)
    a.save()
    theirs = a.label_file.read_bytes()
    mine = int(ws.editor.labels.ids[-1])
    ws.editor.delete([mine])
    ws.flush_sync()  # the tab closes
    assert a.label_file.read_bytes() == theirs
    [kept] = (tmp_path / "home" / "unsaved").glob(f"*_{a.label_file.name}")
    assert mine not in load_labels(kept).ids and load_labels(kept).count == load_labels(a.label_file).count


WRITER = """
import sys, time
from pathlib import Path
from mcp_core.file_version import FileChangedError, FileVersion, write_unless_changed
path, go, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
expected = FileVersion.of(path)
Path(sys.argv[4]).write_text("ready")
while not go.exists():
    time.sleep(0.01)
def write():
    time.sleep(0.3)  # a slow save: the other process checks meanwhile
    path.write_text(me)
try:
    write_unless_changed(path, expected, write)
    print("wrote")
except FileChangedError:
    print("refused")
"""


def test_two_processes_saving_at_once_one_is_refused(tmp_path):
    import subprocess
    import sys

    from waiting import poll

    path, go = tmp_path / "x_seg.npy", tmp_path / "go"
    path.write_text("original")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go), f"writer {i}", str(tmp_path / f"r{i}")],
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    poll(lambda: all((tmp_path / f"r{i}").exists() for i in range(3)), "the writers to read the file's version")
    go.write_text("")
    results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert results == ["refused", "refused", "wrote"]
    assert path.read_text().startswith("writer ")
