"""Home in Chromium: the missing cpsam weights are said, downloaded with a progress bar from a mirror on
127.0.0.1 (cellpose's own download path, in the backend), and the model is then available; offline, Home says
where to copy the file."""

from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest

from mcp_core.weights import URL_ENV

from .browser import wait
from .test_browser_remote import app_at_home, press

SIZE = 1 << 20


class SlowWeights(http.server.BaseHTTPRequestHandler):
    """Serves /cpsam in 64 KiB pieces, 0.1 s apart: long enough for the progress dialog to show."""

    body = np.random.default_rng(0).bytes(SIZE)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/cpsam":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        for start in range(0, SIZE, 1 << 16):
            self.wfile.write(self.body[start:start + (1 << 16)])
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowWeights)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")  # the app process inherits both
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cellpose_models"))
    yield tmp_path / "cellpose_models" / "cpsam"
    httpd.shutdown()
    httpd.server_close()


def test_home_offers_the_missing_weights_and_downloads_them_with_progress(browser, demo, tmp_path, mirror):
    with app_at_home(browser, demo, tmp_path / "home"):
        wait(browser, "document.body.innerText.includes('The CellposeSAM weights (cpsam) are not on this computer')")
        assert "cpsam (weights missing)" in browser.find_element("tag name", "body").text
        press(browser, "Download the cpsam weights")
        wait(browser, "document.body.innerText.includes('Downloading the cpsam weights') && "
                      "document.querySelector('.q-dialog .q-linear-progress') !== null")  # the progress bar
        wait(browser, "document.body.innerText.includes('The cpsam weights are ready')")
        wait(browser, "!document.body.innerText.includes('cpsam (weights missing)')")  # listed as available now
        assert mirror.read_bytes() == SlowWeights.body
        assert "are not on this computer" not in browser.find_element("tag name", "body").text


def test_offline_home_says_where_to_copy_the_weights(browser, demo, tmp_path, monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9/")  # the discard port: nothing answers, as offline
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cellpose_models"))
    with app_at_home(browser, demo, tmp_path / "home"):
        press(browser, "Download the cpsam weights")
        wait(browser, "document.body.innerText.includes('Could not download the cpsam weights')")
        text = browser.find_element("tag name", "body").text
        assert f"copy the file 'cpsam' from a machine with cellpose into {tmp_path / 'cellpose_models'}" in text
        assert "cpsam (weights missing)" in text  # and the app works on without them
