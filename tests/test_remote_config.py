"""The app's remote settings saved into a project folder: merged, checked, and kept out of git."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mcp_core.errors import ParameterError
from mcp_remote.config import CONFIG_NAME, load_config, save_project_config


def test_saved_settings_are_ignored_by_git_and_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv("MULTICELLPOSE_REMOTE_CONFIG", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".gitignore").write_text("*.tmp")  # the user's own lines, no final newline
    save_project_config(project, server_address="127.0.0.1:6000", ssh_host="gpu-box")
    save_project_config(project, ssh_port=2222)  # a second save keeps the other keys and adds no second line
    assert (project / ".gitignore").read_text() == f"*.tmp\n/{CONFIG_NAME}\n"
    assert json.loads((project / CONFIG_NAME).read_text()) == {"server_address": "127.0.0.1:6000",
                                                               "ssh_host": "gpu-box", "ssh_port": 2222}
    cfg = load_config(project=project)
    assert (cfg.server_address, cfg.ssh_host, cfg.ssh_port) == ("127.0.0.1:6000", "gpu-box", 2222)
    base = tmp_path / "base.json"  # the user's own config: the project's keys override only what they hold
    base.write_text(json.dumps({"ssh_host": "elsewhere", "ssh_remote_port": 7000}))
    monkeypatch.setenv("MULTICELLPOSE_REMOTE_CONFIG", str(base))
    cfg = load_config(project=project)
    assert (cfg.ssh_host, cfg.ssh_remote_port, cfg.server_address) == ("gpu-box", 7000, "127.0.0.1:6000")
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        ignored = subprocess.run(["git", "-C", str(project), "check-ignore", CONFIG_NAME], capture_output=True)
        assert ignored.returncode == 0, ignored.stderr


def test_a_new_gitignore_is_created_and_bad_settings_write_nothing(tmp_path):
    save_project_config(tmp_path, ssh_host="node1")
    assert (tmp_path / ".gitignore").read_text() == f"/{CONFIG_NAME}\n"
    before = (tmp_path / CONFIG_NAME).read_bytes()
    with pytest.raises(ParameterError, match="ssh_port"):
        save_project_config(tmp_path, ssh_port=0)
    with pytest.raises(ParameterError, match="unknown key.*passwd"):
        save_project_config(tmp_path, passwd="x")
    assert (tmp_path / CONFIG_NAME).read_bytes() == before


def test_an_existing_entry_is_kept_as_it_is(tmp_path):
    (tmp_path / ".gitignore").write_text(f"{CONFIG_NAME}\n")
    save_project_config(tmp_path, ssh_host="node1")
    assert (tmp_path / ".gitignore").read_text() == f"{CONFIG_NAME}\n"


def test_connect_by_address_with_a_token_or_a_password(tmp_path):
    from mcp_remote.auth import AuthError, request_token
    from mcp_remote.client import connect_address
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server

    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    server = start_server(cfg, bind="127.0.0.1:0")
    try:
        server.site.passwords.set("carol", "a long password")
        minted = request_token(cfg.token_socket())
        with connect_address(server.address, minted["token"]) as by_token:
            assert by_token.whoami()[0] == minted["user"] and by_token.list_models()
        with connect_address(f" {server.address} ", "a long password", user="carol") as by_password:
            assert by_password.whoami()[0] == "carol"
        with pytest.raises(AuthError):
            connect_address(server.address, "not-a-token")
        with pytest.raises(AuthError, match="Wrong user name or password"):
            connect_address(server.address, "wrong", user="carol")
    finally:
        server.stop()


@pytest.mark.parametrize("address,secret,message", [
    ("gpu-box", "t", "must be host:port"),
    ("127.0.0.1:99999", "t", "must be host:port"),
    ("10.1.2.3:50051", "t", "would travel in clear"),
    ("127.0.0.1:50051", "", "Enter the access token"),
])
def test_connect_by_address_refuses_bad_input_before_dialling(address, secret, message):
    from mcp_remote.client import connect_address

    with pytest.raises(ParameterError, match=message):
        connect_address(address, secret)
