"""The SSH tunnel: host keys, ~/.ssh/config, keepalive, an upload that survives a dropped link, and the
port forwarded by OpenSSH's ssh client (key logins) or asyncssh (password logins, fallback)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path

import asyncssh
import pytest

from mcp_core.errors import ParameterError
from mcp_remote.codec import CHUNK_BYTES
from mcp_remote.config import RemoteConfig
from mcp_remote.openssh import ForwardError, OpenSSHForward, free_port, ssh_argv
from mcp_remote.server import start_server
from mcp_remote.testing import LocalSSHServer
from mcp_remote.tunnel import (KEEPALIVE_MISSES, KEEPALIVE_S, HostKeyChanged, HostKeyUnknown, Tunnel, TunnelError,
                               connect, fetch_host_key, trust_host_key)
from waiting import patience, poll

MiB = 1 << 20
needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's ssh client is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tunnel")
    cfg = RemoteConfig(server_storage_root=str(root / "storage"))
    server = start_server(cfg, bind="127.0.0.1:0")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(root / "id"))
    (root / "id").chmod(0o600)  # or OpenSSH's ssh ignores it
    sshd = LocalSSHServer({"alice": "correct horse"}, {"alice": [key.convert_to_public()]}, cfg.token_socket())
    known = root / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    where = {"port": sshd.port, "known_hosts": known, "ssh_config": [],
             "config": RemoteConfig(ssh_remote_port=int(server.address.rsplit(":", 1)[1]))}
    yield server, sshd, where, root
    sshd.close()
    server.stop()


def _by_key(where: dict, root: Path, forwarder: str) -> dict:
    """connect() arguments of a key login (no password) asking for *forwarder*."""
    config = RemoteConfig(ssh_remote_port=where["config"].ssh_remote_port, ssh_forwarder=forwarder)
    return {**where, "key": root / "id", "config": config}


def test_unknown_key_shows_fingerprint_and_changed_key_is_refused(site, tmp_path):
    _, sshd, where, _ = site
    fresh = {**where, "known_hosts": tmp_path / "known_hosts"}
    with pytest.raises(HostKeyUnknown) as unknown:
        connect("127.0.0.1", "alice", password="correct horse", **fresh)
    key = unknown.value.host_key
    assert key.fingerprint == sshd.host_key.get_fingerprint("sha256") and key.fingerprint in str(unknown.value)
    assert fetch_host_key("127.0.0.1", sshd.port, fresh["known_hosts"], ssh_config=[]).fingerprint == key.fingerprint
    trust_host_key(key)
    connect("127.0.0.1", "alice", password="correct horse", **fresh).close()
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    fresh["known_hosts"].write_text(f"[127.0.0.1]:{sshd.port} {impostor}\n")
    with pytest.raises(HostKeyChanged, match="CHANGED"):
        connect("127.0.0.1", "alice", password="correct horse", **fresh)


def test_ssh_config_alias_and_wrong_password(site, tmp_path):
    _, sshd, where, _ = site
    config = tmp_path / "ssh_config"
    config.write_text(f"Host gpu-box\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User alice\n")
    backend = connect("gpu-box", password="correct horse", known_hosts=where["known_hosts"], ssh_config=[str(config)],
                      config=where["config"])
    try:
        assert backend.list_models()[0].scope == "builtin"
    finally:
        backend.close()
    with pytest.raises(TunnelError, match="refused"):
        connect("127.0.0.1", "alice", password="wrong", **where)


def test_keepalive_notices_a_dead_link(site):
    """A server that stops answering (no FIN) is noticed by the keepalive alone, while it is still frozen."""
    server, sshd, where, _ = site
    tunnel = Tunnel("127.0.0.1", "alice", port=sshd.port, password="correct horse", known_hosts=where["known_hosts"],
                    remote_port=where["config"].ssh_remote_port, ssh_config=[]).open()
    thaw = threading.Event()
    try:
        assert tunnel.alive
        sshd._loop.call_soon_threadsafe(thaw.wait, patience(300))  # the server freezes: no answers, and no FIN either
        poll(lambda: not tunnel.alive, "the keepalive to notice the frozen server")
        assert not thaw.is_set()  # noticed while frozen, not after a thaw
    finally:
        thaw.set()  # let the server go on before the next test
        tunnel.close()
    assert KEEPALIVE_S * KEEPALIVE_MISSES <= 5  # "within seconds": a ping every KEEPALIVE_S, so many missed


@pytest.mark.parametrize("forwarder", ["asyncssh", pytest.param("openssh", marks=needs_ssh)])
def test_an_upload_resumes_after_the_tunnel_drops(site, tmp_path, forwarder):
    server, sshd, where, root = site
    backend = connect("127.0.0.1", "alice", **_by_key(where, root, forwarder))
    assert backend.tunnel.forwarded_by == forwarder
    data = os.urandom(48 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    reports: list[int] = []
    resumed: list[int] = []
    status = backend._transfer.Status

    def recording_status(*args, **kwargs):
        reply = status(*args, **kwargs)
        resumed.append(reply.received)
        return reply

    backend._transfer.Status = recording_status

    partial = server.site.storage(backend.whoami()[0]).partial / hashlib.sha256(data).hexdigest()

    def progress(done: int, total: int) -> None:
        reports.append(done)
        if len(reports) == 3:  # two chunks sent: once the server has stored the first, cut the link
            poll(lambda: partial.exists() and partial.stat().st_size >= CHUNK_BYTES, "the server to store a chunk",
                 interval=0.01)
            sshd.drop()

    try:
        sha = backend.upload(path, progress)
        assert sha == hashlib.sha256(data).hexdigest()
        stored = server.site.storage(backend.whoami()[0]).blob(sha)
        assert stored.read_bytes() == data
        assert resumed[0] == 0 and len(resumed) >= 2  # asked where to start, the link dropped, asked again...
        assert 0 < resumed[1] < len(data)  # ...and went on from what the server had, not from zero
        assert reports[-1] == len(data) and backend.bytes_sent < 2 * len(data)
    finally:
        backend.close()


@needs_ssh
def test_openssh_forwards_a_key_login_and_carries_grpc(site, tmp_path):
    server, _, where, root = site
    backend = connect("127.0.0.1", "alice", **_by_key(where, root, "auto"))
    try:
        assert backend.tunnel.forwarded_by == "openssh" and backend.tunnel.fallback_reason is None
        assert backend.tunnel.alive and backend.list_models()[0].scope == "builtin"
        data = os.urandom(3 * CHUNK_BYTES + 5)
        (tmp_path / "blob.bin").write_bytes(data)
        sha = backend.upload(tmp_path / "blob.bin")
        assert server.site.storage(backend.whoami()[0]).blob(sha).read_bytes() == data
    finally:
        backend.close()
    assert not backend.tunnel.alive


@needs_ssh
def test_openssh_checks_the_host_key_itself(site, tmp_path):
    """An unknown or changed key still raises before any forward; and ssh on its own refuses an unknown host."""
    _, sshd, where, root = site
    fresh = {**_by_key(where, root, "openssh"), "known_hosts": tmp_path / "known_hosts"}
    with pytest.raises(HostKeyUnknown):
        connect("127.0.0.1", "alice", **fresh)
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    fresh["known_hosts"].write_text(f"[127.0.0.1]:{sshd.port} {impostor}\n")
    with pytest.raises(HostKeyChanged):
        connect("127.0.0.1", "alice", **{**fresh, "config": _by_key(where, root, "auto")["config"]})
    tunnel = Tunnel("127.0.0.1", "alice", port=sshd.port, client_keys=[str(root / "id")],
                    known_hosts=fresh["known_hosts"], ssh_config=[])
    spec = dataclasses.replace(tunnel._forward_spec(), local_port=free_port(0))
    for known in (impostor, None):  # changed, then unknown
        fresh["known_hosts"].write_text(f"[127.0.0.1]:{sshd.port} {known}\n" if known else "")
        with pytest.raises(ForwardError, match="Host key verification failed"):
            OpenSSHForward.start(ssh_argv(shutil.which("ssh"), spec), spec.local_port, timeout=patience(60))


def test_a_password_login_is_forwarded_by_asyncssh(site):
    _, sshd, where, _ = site
    backend = connect("127.0.0.1", "alice", password="correct horse", **where)
    try:
        assert backend.tunnel.forwarded_by == "asyncssh" and "password" in backend.tunnel.fallback_reason
        assert backend.list_models()[0].scope == "builtin"
    finally:
        backend.close()
    config = RemoteConfig(ssh_remote_port=where["config"].ssh_remote_port, ssh_forwarder="openssh")
    with pytest.raises(TunnelError, match="password"):
        connect("127.0.0.1", "alice", password="correct horse", **{**where, "config": config})
    with pytest.raises(ParameterError, match="forwarder"):
        Tunnel("127.0.0.1", "alice", forwarder="OpenSSH")


def test_auto_falls_back_to_asyncssh_without_ssh_on_path(site, tmp_path, monkeypatch):
    _, _, where, root = site
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = connect("127.0.0.1", "alice", **_by_key(where, root, "auto"))
    try:
        assert backend.tunnel.forwarded_by == "asyncssh" and "PATH" in backend.tunnel.fallback_reason
        assert backend.list_models()[0].scope == "builtin"
    finally:
        backend.close()


@pytest.mark.skipif(sys.platform == "win32", reason="the failing ssh is a shell script")
def test_auto_falls_back_to_asyncssh_when_ssh_fails(site, tmp_path, monkeypatch):
    _, _, where, root = site
    fake = tmp_path / "ssh"
    fake.write_text('#!/bin/sh\nif [ "$1" = -Q ]; then echo aes128-gcm@openssh.com; exit 0; fi\n'
                    'echo "ssh: connect to host 127.0.0.1: no route" >&2\nexit 255\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = connect("127.0.0.1", "alice", **_by_key(where, root, "auto"))
    try:
        assert backend.tunnel.forwarded_by == "asyncssh"
        assert "status 255" in backend.tunnel.fallback_reason and "no route" in backend.tunnel.fallback_reason
        assert backend.list_models()[0].scope == "builtin"
    finally:
        backend.close()
    with pytest.raises(TunnelError, match="no route"):  # asked for by name: no fallback
        connect("127.0.0.1", "alice", **_by_key(where, root, "openssh"))


@needs_ssh
def test_a_dead_ssh_process_is_noticed_and_reopened_on_the_same_port(site):
    _, _, where, root = site
    backend = connect("127.0.0.1", "alice", **_by_key(where, root, "openssh"))
    tunnel = backend.tunnel
    try:
        address, first = tunnel.address, tunnel._ssh.process
        first.kill()
        poll(lambda: not tunnel.alive, "the tunnel to notice that ssh died")
        tunnel.reopen()
        assert tunnel.alive and tunnel.address == address and tunnel.forwarded_by == "openssh"
        assert tunnel._ssh.process.pid != first.pid
        assert backend.list_models()[0].scope == "builtin"
    finally:
        backend.close()
    assert tunnel._ssh is None


@needs_ssh
@pytest.mark.skipif(sys.platform == "win32", reason="a UNIX socket on the SSH host")
def test_openssh_forwards_to_a_unix_socket(site, tmp_path):
    """``remote_path``: ssh forwards the local port to a socket on the SSH host (here an echo server)."""
    import socket

    _, sshd, where, root = site
    path = tmp_path / "echo.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()

        def echo() -> None:  # each connection in turn (the readiness probe is one), until the listener closes
            try:
                while True:
                    conn, _ = listener.accept()
                    with conn:
                        while data := conn.recv(65536):
                            conn.sendall(data)
            except OSError:
                return

        threading.Thread(target=echo, daemon=True).start()
        tunnel = Tunnel("127.0.0.1", "alice", port=sshd.port, client_keys=[str(root / "id")],
                        known_hosts=where["known_hosts"], remote_path=str(path), ssh_config=[], forwarder="openssh")
        tunnel.open()
        try:
            with socket.create_connection(("127.0.0.1", tunnel.local_port)) as sock:
                sock.sendall(b"through ssh")
                assert sock.recv(64) == b"through ssh"
        finally:
            tunnel.close()
