"""The far end of ``remote_bench.py``, in processes of its own, as on a real remote node.

    python benchmarks/remote_node.py server ROOT          # gRPC server + a TCP sink
    python benchmarks/remote_node.py sshd TOKEN_SOCKET PUBLIC_KEY_FILE   # asyncssh server
    python benchmarks/remote_node.py openssh PUBLIC_KEY_FILE FOLDER       # OpenSSH's sshd

Each prints one JSON line with where it listens and its process id, then serves until its
standard input closes (the bench holds the pipe, so nothing outlives it). In real use the SSH
server is sshd on the remote machine, apart from the client and from the MultiCellPose server;
running it here in the bench's own process would make the tunnel's two ends and the upload share
one interpreter lock. ``openssh`` runs the real sshd as this user on a free loopback port, with a
host key, authorized_keys and config file of its own in FOLDER (port forwarding only: no
password, no shell's command is needed by the bench).

The sink stands in for the gRPC server when the bench times a bare SSH port forward: it reads a
connection to its end, discarding the bytes, and answers with how many it got (8 bytes, big-endian).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SINK_READ = 1 << 20
#: Where sshd usually is when it is not on a user's PATH.
SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


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
    print(json.dumps({"grpc": server.address, "sink": sink.getsockname()[1], "token_socket": str(cfg.token_socket()),
                      "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()
    finally:
        sink.close()
        server.stop()


def serve_ssh(token_socket: str, public_key: Path) -> None:
    import asyncssh

    from mcp_remote.testing import LocalSSHServer

    sshd = LocalSSHServer({}, {"bench": [asyncssh.read_public_key(str(public_key))]}, token_socket)
    print(json.dumps({"port": sshd.port, "known_hosts": sshd.known_hosts_line(), "user": "bench", "pid": os.getpid()}),
          flush=True)
    try:
        sys.stdin.read()
    finally:
        sshd.close()


def find_sshd() -> str | None:
    """The path of OpenSSH's sshd, or None when it is not installed."""
    return shutil.which("sshd") or next((p for p in SSHD_PATHS if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def _sshd_config(folder: Path, port: int, public_key: Path) -> Path:
    """A host key, authorized_keys and sshd_config in *folder*: key login of this user, local forwards only."""
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(folder / "host_key"))
    (folder / "host_key").chmod(0o600)
    (folder / "authorized_keys").write_bytes(public_key.read_bytes())
    (folder / "host_key.pub").write_bytes(host_key.export_public_key("openssh"))
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"AllowUsers {_user()}", "PidFile none",
        "AuthenticationMethods publickey", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "AllowTcpForwarding local", "X11Forwarding no", "PermitTTY no",
        "PermitRootLogin prohibit-password", ""]))
    return config


def _user() -> str:
    import getpass

    return getpass.getuser()


def _wait_listening(log: Path, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for sshd's log (``-e``: standard error) to say it listens."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if "Server listening" in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not start (exit status {proc.poll()}): {log.read_text(errors='replace')[-2000:]}")


def serve_openssh(public_key: Path, folder: Path) -> None:
    sshd = find_sshd()
    if sshd is None:
        sys.exit("OpenSSH's sshd is not installed")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory, as root
    port = _free_port()
    config = _sshd_config(folder, port, public_key)
    log = folder / "sshd.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stderr=err)
    try:
        _wait_listening(log, proc)
        known = f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text().strip()}\n"
        print(json.dumps({"port": port, "known_hosts": known, "user": _user(), "pid": os.getpid()}), flush=True)
        sys.stdin.read()
    finally:
        _end(proc)


def _end(proc: subprocess.Popen) -> None:
    """End sshd and the connection processes it started (each ends with its connection anyway)."""
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    proc.terminate()
    proc.wait(timeout=10)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "server":
        serve_grpc(Path(rest[0]))
    elif role == "sshd":
        serve_ssh(rest[0], Path(rest[1]))
    elif role == "openssh":
        serve_openssh(Path(rest[0]), Path(rest[1]))
    else:
        sys.exit(f"unknown role {role!r}: server, sshd or openssh")
