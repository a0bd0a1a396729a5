"""``multicellpose-server``: token over the local socket, adduser, and the loopback rule."""

from __future__ import annotations

import io
import json

from mcp_remote import cli
from mcp_remote.client import RemoteBackend
from mcp_remote.config import load_config
from mcp_remote.server import start_server


def test_token_adduser_and_refused_bind(tmp_path, capsys, monkeypatch):
    config = tmp_path / "remote_config.json"
    config.write_text(json.dumps({"server_storage_root": str(tmp_path / "storage"),
                                  "server_bind": f"unix:{tmp_path / 'grpc.sock'}"}))
    server = start_server(load_config(config))
    try:
        assert cli.main(["--config", str(config), "token", "--json"]) == 0
        reply = json.loads(capsys.readouterr().out)
        backend = RemoteBackend(server.address, reply["token"])
        assert backend.whoami()[0] == reply["user"]
        backend.close()
        monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
        assert cli.main(["--config", str(config), "adduser", "bob", "--password-stdin"]) == 0
        backend = RemoteBackend.login(server.address, "bob", "a long password")
        assert backend.whoami() == ("bob", False)
        backend.close()
    finally:
        server.stop()
    assert cli.main(["--config", str(config), "serve", "--bind", "0.0.0.0:0"]) == 2
    assert "without TLS" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "token"]) == 2  # no server now
    assert "No MultiCellPose server answers" in capsys.readouterr().err
