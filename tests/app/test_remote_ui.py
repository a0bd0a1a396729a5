"""The Home page switches the app to a remote server through a real SSH tunnel, and back."""

from __future__ import annotations

import json

import pytest

from mcp_core.backend import LocalBackend
from waiting import apoll


@pytest.fixture
def remote_site(tmp_path, monkeypatch):
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server
    from mcp_remote.testing import LocalSSHServer

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    server = start_server(cfg, bind="127.0.0.1:0")
    sshd = LocalSSHServer({"alice": "correct horse"}, {}, cfg.token_socket())
    client_cfg = tmp_path / "remote_config.json"
    client_cfg.write_text(json.dumps({"ssh_host": "127.0.0.1", "ssh_port": sshd.port,
                                      "ssh_remote_port": int(server.address.rsplit(":", 1)[1])}))
    monkeypatch.setenv("MULTICELLPOSE_REMOTE_CONFIG", str(client_cfg))
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))  # a fresh ~/.ssh/known_hosts
    yield sshd
    sshd.close()
    server.stop()


async def test_connect_trust_host_key_and_back_to_local(app_user, state, remote_site):
    await app_user.open("/")
    await app_user.should_see("Connect to a remote GPU server")
    app_user.find(marker="remote-user").type("alice")
    app_user.find(marker="remote-password").type("correct horse")
    app_user.find(marker="remote-connect").click()
    await app_user.should_see(remote_site.host_key.get_fingerprint("sha256"), retries=100)
    app_user.find(marker="trust-host").click()
    await apoll(lambda: not isinstance(state.backend, LocalBackend), "the remote backend to be in use")
    assert type(state.backend).__name__ == "RemoteBackend"
    await app_user.should_see("remote", retries=100)
    models = state.backend.list_models()
    assert models and models[0].scope == "builtin"
    app_user.find("Use this computer").click()
    await apoll(lambda: isinstance(state.backend, LocalBackend), "the local backend to be back")
