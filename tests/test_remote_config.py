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
