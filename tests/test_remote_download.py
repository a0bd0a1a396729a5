"""Downloads from a server resume from a partial file and are checked by sha256: a stored file by its sha256,
and a model's weights."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_core.errors import MCPError


@pytest.fixture
def remote(tmp_path):
    from mcp_remote.auth import request_token
    from mcp_remote.client import RemoteBackend
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "server"))
    server = start_server(cfg, bind="127.0.0.1:0")
    backend = RemoteBackend(server.address, request_token(cfg.token_socket())["token"])
    yield backend
    backend.close()
    server.stop()


def test_a_stored_file_downloads_resumes_and_is_checked(remote, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    (tmp_path / "up.bin").write_bytes(data)
    sha = remote.upload(tmp_path / "up.bin")
    moved: list[tuple[int, int]] = []
    assert remote.download(sha, tmp_path / "a.bin", lambda d, t: moved.append((d, t))).read_bytes() == data
    assert moved[-1] == (300_000, 300_000)
    (tmp_path / ".b.bin.part").write_bytes(data[:100_000])  # a download cut off after 100 kB
    moved.clear()
    assert remote.download(sha, tmp_path / "b.bin", lambda d, t: moved.append((d, t))).read_bytes() == data
    assert moved[0][0] > 100_000 and not (tmp_path / ".b.bin.part").exists()  # went on from there
    (tmp_path / ".c.bin.part").write_bytes(b"x" * 100_000)  # a partial file that is not the start of this one
    with pytest.raises(MCPError, match="does not match its sha256"):
        remote.download(sha, tmp_path / "c.bin")
    assert not (tmp_path / "c.bin").exists() and not (tmp_path / ".c.bin.part").exists()


def test_a_model_download_resumes(remote, tmp_path):
    from mcp_core.model import build_model

    model = tmp_path / "m.pth"
    build_model("tiny", ["unassigned", "round"], device="cpu", seed=0, bsize=128).save(model)
    remote.add_model(model)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / ".m.pth.part").write_bytes(model.read_bytes()[:1000])
    local = remote.download_model("m", tmp_path / "local")
    assert local.read_bytes() == model.read_bytes() and local.with_suffix(".json").is_file()
