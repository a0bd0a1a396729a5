"""Driving the real app in headless Chromium: start ``multicellpose`` as a user would, then click."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from waiting import DEADLINE, poll

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")


def need_chromium() -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium and chromedriver are not installed (.ci/run installs them)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """A ``multicellpose`` server process on a project folder; ``token`` is read from its startup line."""

    def __init__(self, folder: Path, home: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        env["MULTICELLPOSE_HOME"] = str(home)
        self.log = home / "app.log"
        home.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "multicellpose"
        self.proc = subprocess.Popen([str(exe), str(folder), "--no-browser", "--port", str(self.port), *extra],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # its worker processes share its group
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        found = re.search(r"MultiCellPose on (http://\S+)", self.log.read_text())
        if not found:
            self.stop()
            raise RuntimeError(f"no startup line in the app's output: {self.log.read_text()}")
        self.start_url = found.group(1)
        self.token: str | None = parse_qs(urlsplit(self.start_url).query).get("token", [None])[0]

    def _wait_until_up(self) -> None:
        def answers() -> bool:
            try:
                urllib.request.urlopen(self.url + "/", timeout=5)
                return True
            except urllib.error.HTTPError:
                return True  # the server answers (e.g. 401 behind a token): it is up
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the app exited: {self.log.read_text()}") from None
                return False

        poll(answers, f"the app to answer on {self.url}", interval=0.3, last=lambda: self.log.read_text()[-2000:])

    def login(self, driver) -> None:
        """Open the token link once, so the browser holds the session cookie."""
        driver.get(self.start_url)

    def stop(self) -> None:
        """Stop the app and every process it started."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)


def make_driver(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={download_dir.parent / 'chrome-profile'}")
    opts.binary_location = CHROMIUM
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, script: str, timeout: float = DEADLINE):
    """Poll a JS expression until it is truthy; returns its value."""
    return poll(lambda: driver.execute_script("return " + script), f"the page to show: {script}", timeout,
                interval=0.05)


def until(condition, timeout: float = DEADLINE, what: str = "a condition on the app's files"):
    """Poll *condition* (e.g. a file the app writes) until it is truthy; returns its value."""
    return poll(condition, what, timeout)
