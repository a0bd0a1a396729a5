"""The real app in Chromium connects to a real MultiCellPose server on 127.0.0.1 by address and token, and
downloads the server's model to this computer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.keys import Keys

from .browser import App, wait
from .test_browser_jobs import click_text


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A server on a free loopback port; the app's remote_config.json names its address."""
    from mcp_remote.auth import request_token
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    running = start_server(cfg, bind="127.0.0.1:0")
    client_cfg = tmp_path / "remote_config.json"
    client_cfg.write_text(json.dumps({"server_address": running.address}))
    monkeypatch.setenv("MULTICELLPOSE_REMOTE_CONFIG", str(client_cfg))  # the app process inherits it
    running.token = request_token(cfg.token_socket())["token"]
    from mcp_core.model import build_model
    from mcp_remote.client import RemoteBackend

    model = tmp_path / "tinym.pth"
    build_model("tiny", ["unassigned", "round"], device="cpu", seed=1, bsize=128).save(model)
    with RemoteBackend(running.address, running.token) as user:
        user.add_model(model)  # a model of this user's on the server
    running.model = model
    yield running
    running.stop()


def field(driver, label: str):
    return driver.find_element("xpath", f"//input[@aria-label={label!r}]")


def press(driver, text: str) -> None:
    """Click a button by its text even under a toast (the failure's message covers it)."""
    driver.execute_script("arguments[0].click()",
                          driver.find_element("xpath", f"//button[.//*[normalize-space(text())={text!r}]]"))


@contextlib.contextmanager
def app_at_home(browser, demo, home) -> Iterator[App]:
    """The app, started now (with this test's environment), open on Home in *browser*."""
    app = App(demo, home)
    try:
        app.login(browser)
        browser.get(app.url + "/")
        wait(browser, "document.body.innerText.includes('local ·')")
        yield app
    finally:
        app.stop()


def test_connect_by_address_with_a_token(browser, demo, tmp_path, server):
    with app_at_home(browser, demo, tmp_path / "home"):
        click_text(browser, "Connect to a remote GPU server")
        address = field(browser, "Server address (host:port)")
        assert address.get_attribute("value") == server.address  # pre-filled from server_address
        secret = field(browser, "Token (or password)")
        secret.send_keys("not-the-token")
        press(browser, "Connect to address")
        wait(browser, f"document.body.innerText.includes('Could not connect to {server.address}')")
        assert not (demo / "remote_config.json").exists()  # nothing remembered from a failed attempt
        secret.send_keys(Keys.CONTROL, "a")  # select and overwrite: clear() bypasses the page's input events
        secret.send_keys(server.token)
        press(browser, "Connect to address")
        wait(browser, "document.body.innerText.includes('remote ·')")  # the Backend card shows the server
        assert f"Connected to {server.address}" in browser.find_element("tag name", "body").text
        assert json.loads((demo / "remote_config.json").read_text()) == {"server_address": server.address}
        assert "/remote_config.json" in (demo / ".gitignore").read_text().splitlines()
        assert server.token not in (demo / "remote_config.json").read_text()  # never a secret
        wait(browser, "document.body.innerText.includes('tinym')")  # the server's model, ready to download
        press(browser, "Download to this computer")
        local = tmp_path / "home" / "models" / "tinym.pth"
        wait(browser, "document.body.innerText.includes('Downloaded tinym to')")
        assert local.read_bytes() == server.model.read_bytes() and local.with_suffix(".json").is_file()
