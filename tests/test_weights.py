"""Fetching the cpsam weights through cellpose's own download path, from a file served on 127.0.0.1
(tests never download): progress, the file in cellpose's folder, the model listed as available; offline, a
message that says where to copy the file. Locally and through a server."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest

from mcp_core.backend import LocalBackend
from mcp_core.errors import ModelError
from mcp_core.weights import URL_ENV


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A weights mirror on a free loopback port holding a small file named cpsam; an empty cellpose folder."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "cpsam").write_bytes(np.random.default_rng(0).bytes(300_000))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cellpose_models"))
    yield served / "cpsam"
    httpd.shutdown()
    httpd.server_close()


def _check(backend, mirror, tmp_path) -> None:
    assert not next(m for m in backend.list_models() if m.name == "cpsam").available
    moved: list[tuple[int, int]] = []
    info = backend.download_weights("cpsam", progress=lambda done, total: moved.append((done, total)))
    assert info.name == "cpsam" and info.available
    assert (tmp_path / "cellpose_models" / "cpsam").read_bytes() == mirror.read_bytes()
    assert moved[-1] == (300_000, 300_000) and all(a[0] <= b[0] for a, b in zip(moved, moved[1:]))


def test_local_download_reports_progress_and_makes_cpsam_available(mirror, tmp_path):
    _check(LocalBackend(tmp_path / "home"), mirror, tmp_path)


def test_download_through_a_server(mirror, tmp_path):
    from mcp_remote.auth import request_token
    from mcp_remote.client import RemoteBackend
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "server"))
    server = start_server(cfg, bind="127.0.0.1:0")
    try:
        with RemoteBackend(server.address, request_token(cfg.token_socket())["token"]) as remote:
            _check(remote, mirror, tmp_path)
            with pytest.raises(ModelError, match="no pretrained weights named 'tinym'"):
                remote.download_weights("tinym")
    finally:
        server.stop()


def test_offline_the_error_says_where_to_copy_the_file(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9/")  # the discard port: nothing answers
    with pytest.raises(ModelError) as err:
        LocalBackend(tmp_path / "home").download_weights("cpsam")
    message = str(err.value)
    assert "Could not download the cpsam weights" in message
    assert f"copy the file 'cpsam' from a machine with cellpose into {tmp_path / 'cellpose_models'}" in message
    assert not (tmp_path / "cellpose_models" / "cpsam").exists()
