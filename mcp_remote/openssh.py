"""OpenSSH's ``ssh -N -L`` as the port forwarder of a :class:`~mcp_remote.tunnel.Tunnel`.

The forward is the same as asyncssh's, but its bytes are encrypted and framed in C: on a 2-core
machine asyncssh's event loop costs 2-3.5 CPU s per GiB carried, which caps an upload well below
direct gRPC; the ssh process 0.7-1.6 s (``benchmarks/remote_bench.py``). The tunnel keeps its
asyncssh connection for the host-key check, the login, running commands and liveness, and starts
``ssh`` beside it when the login needs no password.

``ssh`` checks the host key itself against the tunnel's known_hosts only (``StrictHostKeyChecking=yes``,
never writing that file), logs in by key or agent only (``BatchMode=yes``: it never asks for, and is
never given, a password) and exits when the local port cannot be opened (``ExitOnForwardFailure``).
It is ready once its port accepts a connection: that probe reaches the server as one connection
opened and closed at once.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from mcp_core.errors import MCPError

LOG = logging.getLogger("mcp_remote.tunnel")
#: Seconds between two checks of whether ssh accepts connections on its port yet.
READY_POLL_S = 0.05
#: Lines of ssh's standard error kept for the message when it fails.
STDERR_LINES = 20
#: No console window for ssh.exe when the app has none (Windows only; 0 elsewhere).
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)


class ForwardError(MCPError):
    """OpenSSH's ssh cannot forward the port (the reason is in the message)."""


@dataclasses.dataclass(frozen=True)
class ForwardSpec:
    """What ``ssh -N -L`` needs: the login (no password), the host-key file and the two ends.

    Parameters
    ----------
    host, port, user
        The SSH server; None leaves it to ssh_config (as asyncssh does).
    client_keys
        Private key files; None lets ssh use the agent and its default keys.
    known_hosts
        The only file host keys are checked against.
    ssh_config
        Config files: None reads the usual ones, an empty list none, else exactly one file.
    local_port
        The loopback port ssh listens on (must be free).
    remote_host, remote_port, remote_path
        Where the server listens, seen from the SSH host; *remote_path* for a UNIX socket.
    ciphers, keepalive_s, keepalive_misses, connect_timeout
        As the asyncssh connection uses them.
    """

    host: str
    port: int | None
    user: str | None
    client_keys: Sequence[str] | None
    known_hosts: Path
    ssh_config: Sequence[str] | None
    local_port: int
    remote_host: str
    remote_port: int
    remote_path: str | None
    ciphers: Sequence[str]
    keepalive_s: float
    keepalive_misses: int
    connect_timeout: float


def find_ssh() -> str | None:
    """The path of OpenSSH's ``ssh`` (``ssh.exe`` on Windows) on PATH, or None."""
    return shutil.which("ssh")


def unusable_reason(spec: ForwardSpec, password: str | None, ssh: str | None) -> str | None:
    """Why *ssh* (None: not found) cannot carry this forward, or None when it can try."""
    if password is not None:
        return "the login uses a password, which is never handed to ssh"
    if ssh is None:
        return "OpenSSH's ssh is not on PATH"
    if spec.ssh_config is not None and len(spec.ssh_config) > 1:
        return "ssh reads one config file, and several were given"
    if spec.host.startswith("-") or "@" in spec.host or "://" in spec.host:
        return f"ssh would not read {spec.host!r} as a host name"
    return None


@functools.lru_cache(maxsize=4)
def supported_ciphers(ssh: str) -> frozenset[str]:
    """The ciphers this ``ssh`` knows (``ssh -Q cipher``)."""
    try:
        out = subprocess.run([ssh, "-Q", "cipher"], capture_output=True, text=True, timeout=30, check=True,
                             stdin=subprocess.DEVNULL, creationflags=_NO_WINDOW).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ForwardError(f"`{ssh} -Q cipher` failed: {exc}") from exc
    return frozenset(out.split())


def ssh_argv(ssh: str, spec: ForwardSpec) -> list[str]:
    """The command line of ``ssh -N -L`` for *spec*."""
    ciphers = [c for c in spec.ciphers if c in supported_ciphers(ssh)]
    if not ciphers:
        raise ForwardError(f"{ssh} supports none of the ciphers {', '.join(spec.ciphers)}")
    options = {"BatchMode": "yes", "StrictHostKeyChecking": "yes", "UserKnownHostsFile": _quoted(spec.known_hosts),
               "GlobalKnownHostsFile": "none", "CheckHostIP": "no", "UpdateHostKeys": "no",
               "ExitOnForwardFailure": "yes", "ControlMaster": "no", "ControlPath": "none",
               "ServerAliveInterval": str(math.ceil(spec.keepalive_s)),
               "ServerAliveCountMax": str(spec.keepalive_misses),
               "ConnectTimeout": str(math.ceil(spec.connect_timeout)), "Ciphers": ",".join(ciphers),
               "LogLevel": "ERROR"}
    if spec.client_keys:
        options["IdentitiesOnly"] = "yes"
    argv = [ssh, "-N", "-T", "-a", "-x"]
    if spec.ssh_config is not None:
        argv += ["-F", spec.ssh_config[0] if spec.ssh_config else "none"]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    for key in spec.client_keys or ():
        argv += ["-i", os.path.expanduser(key).replace("%", "%%")]
    if spec.port:
        argv += ["-p", str(spec.port)]
    if spec.user:
        argv += ["-l", spec.user]
    return [*argv, "-L", _forward(spec), "--", spec.host]


def _quoted(path: Path) -> str:
    """*path* as one word of an ssh option value (ssh splits values on spaces and expands ``%`` tokens)."""
    text = str(path).replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _forward(spec: ForwardSpec) -> str:
    """The ``-L`` argument: the loopback port, then the server's host and port, or socket path."""
    if spec.remote_path:
        return f"127.0.0.1:{spec.local_port}:{spec.remote_path}"
    host = f"[{spec.remote_host}]" if ":" in spec.remote_host else spec.remote_host
    return f"127.0.0.1:{spec.local_port}:{host}:{spec.remote_port}"


def free_port(port: int) -> int:
    """*port* when nothing listens on it on 127.0.0.1 (0: a free port, picked here).

    Raises
    ------
    ForwardError
        When *port* is taken.
    """
    try:
        with socket.create_server(("127.0.0.1", port)) as probe:
            return probe.getsockname()[1]
    except OSError as exc:
        raise ForwardError(f"the local port {port} is taken ({exc})") from exc


class OpenSSHForward:
    """A running ``ssh -N -L`` process that this object started, and ends.

    Parameters
    ----------
    argv
        Its command line (:func:`ssh_argv`).
    port
        The local port it forwards; :meth:`start` returns once it accepts connections there.
    """

    def __init__(self, argv: Sequence[str], port: int) -> None:
        self.port = port
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, errors="replace", creationflags=_NO_WINDOW)
        self._reader = threading.Thread(target=_read_stderr, args=(self.process, self._stderr, port),
                                        name="ssh-stderr", daemon=True)
        self._reader.start()
        self._end = weakref.finalize(self, _end_process, self.process)

    @classmethod
    def start(cls, argv: Sequence[str], port: int, timeout: float) -> OpenSSHForward:
        """Start ssh and wait until its port accepts connections.

        Raises
        ------
        ForwardError
            When ssh exits first (its standard error is in the message) or *timeout* seconds pass;
            the process is ended then.
        """
        forward = cls(argv, port)
        try:
            forward._wait_ready(timeout)
        except BaseException:
            forward.close()
            raise
        return forward

    @property
    def alive(self) -> bool:
        """Whether ssh is still running."""
        return self.process.poll() is None

    def close(self) -> None:
        """End ssh (terminate, wait, then kill)."""
        self._end()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive:
            if _accepts(self.port):
                return
            if time.monotonic() > deadline:
                raise ForwardError(f"ssh did not open the local port {self.port} within {timeout:.0f} s")
            time.sleep(READY_POLL_S)
        self._reader.join(timeout=5)
        said = " ".join(self._stderr).strip()
        raise ForwardError(f"ssh exited with status {self.process.returncode}" + (f": {said}" if said else ""))


def _read_stderr(process: subprocess.Popen, lines: collections.deque[str], port: int) -> None:
    """Log ssh's standard error and keep its last lines, until ssh exits (so its pipe never fills)."""
    with process.stderr:
        for line in process.stderr:
            if line.strip():
                lines.append(line.strip())
                LOG.warning("ssh (port %d): %s", port, line.strip())


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _end_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
