"""Launching the app: loopback by default, token protection, demo project when no folder is given."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.request

import pytest

from .browser import App


def test_token_protects_every_page(demo, tmp_path):
    app = App(demo, tmp_path / "home", "--token", "s3cret")
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(app.url + "/trainer", timeout=10)
        assert info.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(app.url + "/?token=wrong", timeout=10)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        assert opener.open(app.url + "/?token=s3cret", timeout=10).status == 200
        assert opener.open(app.url + "/trainer", timeout=10).status == 200  # the cookie carries the token
    finally:
        app.stop()


def test_no_folder_opens_the_demo_project(tmp_path, monkeypatch):
    from mcp_app.main import demo_folder
    from mcp_core.synthetic import DEMO_IMAGES, DEMO_LABELLED

    monkeypatch.setenv("MULTICELLPOSE_HOME", str(tmp_path / "home"))
    folder = demo_folder()
    assert folder == tmp_path / "home" / "demo"
    assert len(list(folder.glob("*.tif"))) == DEMO_IMAGES and len(list(folder.glob("*_seg.npy"))) == DEMO_LABELLED


def test_binds_loopback_by_default():
    from mcp_app.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert args.host == "127.0.0.1" and args.folder is None
