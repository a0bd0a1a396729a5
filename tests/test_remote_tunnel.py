"""The SSH tunnel: host keys, ~/.ssh/config, keepalive, and an upload that survives a dropped link."""

from __future__ import annotations

import hashlib
import os
import threading

import asyncssh
import pytest

from mcp_remote.codec import CHUNK_BYTES
from mcp_remote.config import RemoteConfig
from mcp_remote.server import start_server
from mcp_remote.testing import LocalSSHServer
from mcp_remote.tunnel import (KEEPALIVE_MISSES, KEEPALIVE_S, HostKeyChanged, HostKeyUnknown, Tunnel, connect,
                               fetch_host_key, trust_host_key)
from waiting import patience, poll

MiB = 1 << 20


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tunnel")
    cfg = RemoteConfig(server_storage_root=str(root / "storage"))
    server = start_server(cfg, bind="127.0.0.1:0")
    sshd = LocalSSHServer({"alice": "correct horse"}, {}, cfg.token_socket())
    known = root / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    where = {"port": sshd.port, "known_hosts": known, "ssh_config": [],
             "config": RemoteConfig(ssh_remote_port=int(server.address.rsplit(":", 1)[1]))}
    yield server, sshd, where, root
    sshd.close()
    server.stop()


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
    from mcp_remote.tunnel import TunnelError

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


def test_an_upload_resumes_after_the_tunnel_drops(site, tmp_path):
    server, sshd, where, _ = site
    backend = connect("127.0.0.1", "alice", password="correct horse", **where)
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
