"""The far end of ``remote_bench.py``, in processes of its own, as on a real remote node.

    python benchmarks/remote_node.py server ROOT          # gRPC server + a TCP sink
    python benchmarks/remote_node.py sshd TOKEN_SOCKET PUBLIC_KEY_FILE   # asyncssh server

Each prints one JSON line with where it listens, then serves until its standard input closes
(the bench holds the pipe, so nothing outlives it). In real use the SSH server is sshd on the
remote machine, apart from the client and from the MultiCellPose server; running it here in the
bench's own process would make the tunnel's two ends and the upload share one interpreter lock.

The sink stands in for the gRPC server when the bench times a bare SSH port forward: it reads a
connection to its end, discarding the bytes, and answers with how many it got (8 bytes, big-endian).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

SINK_READ = 1 << 20


def _sink(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_drain, args=(conn,), daemon=True).start()


def _drain(conn: socket.socket) -> None:
    buf = bytearray(SINK_READ)
    total = 0
    with conn:
        while n := conn.recv_into(buf):
            total += n
        conn.sendall(total.to_bytes(8, "big"))


def serve_grpc(root: Path) -> None:
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server

    cfg = RemoteConfig(server_storage_root=str(root / "storage"), quota_bytes=64 << 30)
    server = start_server(cfg, bind="127.0.0.1:0")
    sink = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_sink, args=(sink,), daemon=True).start()
    print(json.dumps({"grpc": server.address, "sink": sink.getsockname()[1], "token_socket": str(cfg.token_socket())}),
          flush=True)
    try:
        sys.stdin.read()
    finally:
        sink.close()
        server.stop()


def serve_ssh(token_socket: str, public_key: Path) -> None:
    import asyncssh

    from mcp_remote.testing import LocalSSHServer

    sshd = LocalSSHServer({}, {"bench": [asyncssh.read_public_key(str(public_key))]}, token_socket)
    print(json.dumps({"port": sshd.port, "known_hosts": sshd.known_hosts_line()}), flush=True)
    try:
        sys.stdin.read()
    finally:
        sshd.close()


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "server":
        serve_grpc(Path(rest[0]))
    elif role == "sshd":
        serve_ssh(rest[0], Path(rest[1]))
    else:
        sys.exit(f"unknown role {role!r}: server or sshd")
