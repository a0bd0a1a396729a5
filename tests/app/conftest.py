"""Fixtures for app tests: a demo project, app state, and a simulated browser that answers canvas calls."""

from __future__ import annotations

import re

import pytest

from mcp_core.synthetic import write_demo_project
from waiting import patience


@pytest.fixture
def demo(tmp_path):
    folder = tmp_path / "project"
    write_demo_project(folder, n_images=3, n_labelled=1, shape=(96, 96))
    return folder


@pytest.fixture
def state(demo, tmp_path, monkeypatch):
    from mcp_app.project import Project
    from mcp_app.state import AppState
    from mcp_core.backend import LocalBackend

    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    st = AppState(project=Project.open(demo), backend=LocalBackend(tmp_path / "home"))
    return st


@pytest.fixture
def app_user(user, state):
    """The NiceGUI ``user`` with the app's pages registered and canvas JS calls answered."""
    from mcp_app import pages

    pages.register(state)
    # should_see/should_not_see retry 3 times, 0.1 s apart, by default: too little for a loaded machine.
    for name in ("should_see", "should_not_see"):
        check = getattr(user, name)

        async def patient(*args, _check=check, retries: int = 3, **kwargs):
            return await _check(*args, retries=max(retries, int(patience(30) / 0.1)), **kwargs)

        setattr(user, name, patient)
    user.javascript_rules[re.compile(r"""(?s).*runMethod\(.*["'](load|setImage)["'].*""")] = lambda m: {"width": 96, "height": 96}
    return user


@pytest.fixture
def app(demo, tmp_path, browser):
    """The real ``multicellpose`` app on the demo project, with the browser logged in."""
    from .browser import App

    server = App(demo, tmp_path / "home")
    server.login(browser)
    yield server
    server.stop()


async def measure_folder_labels(app_user, plugins=(), done: str = "objects in 1 image(s)") -> None:
    """In the Analyzer, measure the folder's labels (``_seg.npy``) with "basic" and the *plugins* (their titles)
    ticked, and wait for *done*."""
    from nicegui import ui

    await app_user.open("/analyzer")
    await app_user.should_see("Measurements")
    boxes = {e.text: e for e in app_user.find(ui.checkbox).elements}
    for title in plugins:
        boxes[title].value = True
    [source] = [e for e in app_user.find(ui.select).elements if e.props.get("label") == "Measure"]
    source.value = "seg"
    app_user.find(marker="measure-folder").click()
    await app_user.should_see(done, retries=50)
