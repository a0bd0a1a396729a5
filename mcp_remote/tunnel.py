"""SSH tunnel to a MultiCellPose server (asyncssh), and :func:`connect`, the one call a UI needs.

Typical use from a "Connect to remote" dialog::

    try:
        backend = connect("gpu-server", "alice", password=pw)
    except HostKeyUnknown as exc:
        if user_accepts(exc.host_key.fingerprint):      # show it once
            trust_host_key(exc.host_key)
            backend = connect("gpu-server", "alice", password=pw)
    # HostKeyChanged: refuse, and tell the user the key changed

``~/.ssh/config`` is honoured (aliases, HostName, Port, User, IdentityFile), as is the SSH
agent. AES-GCM ciphers come first (fastest with AES-NI); keepalive pings every 1.5 s, and after
3 unanswered ones (asyncssh gives up at the 4th interval) a dead link is dropped in about 6 s.
The token is minted over the SSH login itself (``multicellpose-server token`` on the server),
so no password for the server is needed; a password from the server's own password file works too.

When OpenSSH's ``ssh`` is on PATH and the login needs no password (keys or the agent), the port is
forwarded by ``ssh -N -L`` beside the asyncssh connection (:mod:`mcp_remote.openssh`; its C code
carries an upload near direct gRPC speed), else, or when ssh fails, by asyncssh as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import asyncssh

from mcp_core.errors import MCPError, ParameterError

from .client import RemoteBackend
from .config import Forwarder, RemoteConfig
from .openssh import ForwardError, ForwardSpec, OpenSSHForward, find_ssh, free_port, ssh_argv, unusable_reason

#: Preferred ciphers: AES-GCM first (about 1.6x chacha20 through asyncssh here), then the usual ones.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes256-ctr")
KEEPALIVE_S = 1.5
KEEPALIVE_MISSES = 3
TOKEN_COMMAND = "multicellpose-server token --json"
LOG = logging.getLogger("mcp_remote.tunnel")


class TunnelError(MCPError):
    """The SSH connection cannot be made or kept."""


@dataclasses.dataclass
class HostKey:
    """An SSH server's host key, as shown to the user before trusting it."""

    host: str
    port: int
    fingerprint: str
    key_type: str
    public_key: str
    known_hosts: str

    def known_hosts_line(self) -> str:
        """The line to add to a known_hosts file."""
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.public_key}\n"


class HostKeyUnknown(TunnelError):
    """The server's host key is not in known_hosts yet: show ``host_key.fingerprint`` and ask."""

    def __init__(self, host_key: HostKey) -> None:
        super().__init__(f"The host key of {host_key.host}:{host_key.port} is not known yet. Its fingerprint is "
                         f"{host_key.fingerprint} ({host_key.key_type}); accept it only if it is the server's.")
        self.host_key = host_key


class HostKeyChanged(TunnelError):
    """The server's host key differs from the one trusted before: refused."""

    def __init__(self, host_key: HostKey) -> None:
        super().__init__(f"The host key of {host_key.host}:{host_key.port} has CHANGED (now {host_key.fingerprint}). "
                         f"Someone may be intercepting the connection; refusing to connect. If the server was "
                         f"reinstalled, remove its old line from {host_key.known_hosts}.")
        self.host_key = host_key


def default_known_hosts() -> Path:
    """``~/.ssh/known_hosts``."""
    return Path.home() / ".ssh" / "known_hosts"


class _Loop:
    """An asyncio loop in a daemon thread, for the synchronous callers of the tunnel."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ssh-tunnel", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def _options(host: str, port: int | None, ssh_config: Sequence[str] | None) -> asyncssh.SSHClientConnectionOptions:
    kwargs: dict[str, Any] = {"host": host, "port": port if port else ()}
    if ssh_config is not None:
        kwargs["config"] = list(ssh_config)
    return asyncssh.SSHClientConnectionOptions(**kwargs)


async def _host_key(host: str, port: int | None, ssh_config: Sequence[str] | None, known_hosts: Path) -> HostKey:
    opts = _options(host, port, ssh_config)
    key = await asyncssh.get_server_host_key(host, port if port else (), options=opts)
    if key is None:
        raise TunnelError(f"{host} presented no host key.")
    return HostKey(host=opts.host, port=opts.port, fingerprint=key.get_fingerprint("sha256"),
                   key_type=key.get_algorithm(), public_key=key.export_public_key("openssh").decode().strip(),
                   known_hosts=str(known_hosts))


def fetch_host_key(host: str, port: int | None = None, known_hosts: str | os.PathLike | None = None,
                   ssh_config: Sequence[str] | None = None) -> HostKey:
    """The host key an SSH server presents (to show its fingerprint before trusting it)."""
    try:
        return asyncio.run(_host_key(host, port, ssh_config, Path(known_hosts or default_known_hosts())))
    except (OSError, asyncssh.Error) as exc:
        raise TunnelError(f"Cannot reach the SSH server {host}: {exc}.") from exc


def trust_host_key(host_key: HostKey) -> None:
    """Add a host key the user accepted to its known_hosts file."""
    from mcp_core.atomic import atomic_write_text

    path = Path(host_key.known_hosts)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text("utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + host_key.known_hosts_line())


def _key_status(host_key: HostKey) -> str:
    """``"trusted"``, ``"unknown"`` or ``"changed"`` according to the known_hosts file."""
    path = Path(host_key.known_hosts)
    if not path.exists():
        return "unknown"
    known = asyncssh.read_known_hosts(str(path))
    trusted = known.match(host_key.host, "", host_key.port)[0]
    if not trusted:
        return "unknown"
    wanted = host_key.public_key.split()[:2]
    ok = any(k.export_public_key("openssh").decode().split()[:2] == wanted for k in trusted)
    return "trusted" if ok else "changed"


class Tunnel:
    """A local port forwarded over SSH to the server's port (or UNIX socket) on the SSH host.

    Parameters
    ----------
    host, port, user
        The SSH server (``~/.ssh/config`` fills what is not given).
    password, client_keys
        Password, and/or private key files (default: the agent and ``~/.ssh/id_*``).
    known_hosts
        The known_hosts file host keys are checked against (never skipped).
    remote_host, remote_port, remote_path
        Where the server listens, seen from the SSH host; *remote_path* for a UNIX socket.
    local_port
        The local end (0 picks one; a reopened tunnel keeps it).
    ssh_config
        SSH config files to read instead of ``~/.ssh/config``.
    forwarder
        What carries the port: ``"openssh"`` (OpenSSH's ``ssh -N -L``, key or agent logins only),
        ``"asyncssh"``, or ``"auto"``: OpenSSH's when it can, else (or when it fails) asyncssh's.

    Attributes
    ----------
    forwarded_by : {"openssh", "asyncssh"} or None
        What carries the port while the tunnel is open.
    fallback_reason : str or None
        Why asyncssh carries it instead of OpenSSH's ssh (None when ssh does).
    """

    def __init__(self, host: str, user: str | None = None, *, port: int | None = None, password: str | None = None,
                 client_keys: Sequence[str] | None = None, known_hosts: str | os.PathLike | None = None,
                 remote_host: str = "127.0.0.1", remote_port: int = 50051, remote_path: str | None = None,
                 local_port: int = 0, ssh_config: Sequence[str] | None = None, connect_timeout: float = 20.0,
                 forwarder: Forwarder = "auto") -> None:
        self.host, self.user, self.port = host, user, port
        self.password = password
        self.client_keys = list(client_keys) if client_keys else None
        self.known_hosts = Path(known_hosts or default_known_hosts())
        self.remote_host, self.remote_port, self.remote_path = remote_host, remote_port, remote_path
        self.local_port = local_port
        self.ssh_config = ssh_config
        self.connect_timeout = connect_timeout
        if forwarder not in get_args(Forwarder):
            raise ParameterError(f"forwarder must be one of {', '.join(get_args(Forwarder))}, not {forwarder!r}.")
        self.forwarder = forwarder
        self.forwarded_by: Literal["openssh", "asyncssh"] | None = None
        self.fallback_reason: str | None = None
        self.host_key: HostKey | None = None
        self._loop: _Loop | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._listener: Any = None
        self._ssh: OpenSSHForward | None = None
        self._lost = threading.Event()

    @property
    def address(self) -> str:
        """``127.0.0.1:<local port>``: where a gRPC channel should dial."""
        return f"127.0.0.1:{self.local_port}"

    @property
    def alive(self) -> bool:
        """Whether the SSH connection is up (and OpenSSH's ssh, when it forwards the port)."""
        return self._conn is not None and not self._lost.is_set() and (self._ssh is None or self._ssh.alive)

    def open(self) -> Tunnel:
        """Connect and start forwarding.

        Raises
        ------
        HostKeyUnknown, HostKeyChanged
            When the host key is not (or no longer) the trusted one.
        TunnelError
            When the connection or login fails, or ``forwarder="openssh"`` cannot forward.
        """
        if self._loop is None:
            self._loop = _Loop()
        self._call(self._connect())
        try:
            self._forward()
        except BaseException:
            self._drop()
            raise
        return self

    def _call(self, coro) -> None:
        """Run an asyncssh step on the tunnel's loop, its errors told as the tunnel's."""
        try:
            self._loop.run(coro, timeout=self.connect_timeout + 10)
        except asyncssh.HostKeyNotVerifiable:
            key = self._loop.run(_host_key(self.host, self.port, self.ssh_config, self.known_hosts), timeout=30)
            if _key_status(key) == "changed":
                raise HostKeyChanged(key) from None
            raise HostKeyUnknown(key) from None
        except asyncssh.PermissionDenied as exc:
            raise TunnelError(f"SSH login to {self.host} as {self.user or 'the default user'} was refused: {exc.reason}.") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise TunnelError(f"Cannot open the SSH tunnel to {self.host}: {exc}.") from exc

    async def _connect(self) -> None:
        lost = self._lost

        class _Client(asyncssh.SSHClient):
            def connection_lost(self, exc: Exception | None) -> None:
                lost.set()

        known = str(self.known_hosts) if self.known_hosts.exists() else asyncssh.import_known_hosts("")
        kwargs: dict[str, Any] = {"known_hosts": known, "encryption_algs": list(CIPHERS),
                                  "keepalive_interval": KEEPALIVE_S, "keepalive_count_max": KEEPALIVE_MISSES,
                                  "connect_timeout": self.connect_timeout, "client_factory": _Client}
        if self.port:
            kwargs["port"] = self.port
        if self.user:
            kwargs["username"] = self.user
        if self.password is not None:
            kwargs["password"] = self.password
        if self.client_keys is not None:
            kwargs["client_keys"] = self.client_keys
        if self.ssh_config is not None:
            kwargs["config"] = list(self.ssh_config)
        conn = await asyncssh.connect(self.host, **kwargs)
        self._lost.clear()
        self._conn = conn
        key = conn.get_server_host_key()
        if key is not None:
            self.host_key = HostKey(host=self.host, port=self.port or 22, fingerprint=key.get_fingerprint("sha256"),
                                    key_type=key.get_algorithm(),
                                    public_key=key.export_public_key("openssh").decode().strip(),
                                    known_hosts=str(self.known_hosts))

    def _forward(self) -> None:
        """Forward the local port with OpenSSH's ssh when it can, else with asyncssh."""
        reason = "forwarder 'asyncssh' was asked for" if self.forwarder == "asyncssh" else self._forward_openssh()
        if reason is None:
            self.forwarded_by, self.fallback_reason = "openssh", None
            return
        if self.forwarder == "openssh":
            raise TunnelError(f"OpenSSH's ssh cannot forward the tunnel to {self.host}: {reason}.")
        if self.forwarder == "auto":
            LOG.info("The tunnel to %s is forwarded by asyncssh: %s.", self.host, reason)
        self._call(self._forward_asyncssh())
        self.forwarded_by, self.fallback_reason = "asyncssh", reason

    def _forward_openssh(self) -> str | None:
        """Start ``ssh -N -L`` on the local port; None when it forwards, else why not."""
        spec, ssh = self._forward_spec(), find_ssh()
        reason = unusable_reason(spec, self.password, ssh)
        if reason is not None:
            return reason
        try:
            spec = dataclasses.replace(spec, local_port=free_port(self.local_port))
            self._ssh = OpenSSHForward.start(ssh_argv(ssh, spec), spec.local_port, self.connect_timeout)
        except (ForwardError, OSError) as exc:
            return str(exc)
        self.local_port = spec.local_port
        return None

    def _forward_spec(self) -> ForwardSpec:
        return ForwardSpec(host=self.host, port=self.port, user=self.user, client_keys=self.client_keys,
                           known_hosts=self.known_hosts, ssh_config=self.ssh_config, local_port=self.local_port,
                           remote_host=self.remote_host, remote_port=self.remote_port, remote_path=self.remote_path,
                           ciphers=CIPHERS, keepalive_s=KEEPALIVE_S, keepalive_misses=KEEPALIVE_MISSES,
                           connect_timeout=self.connect_timeout)

    async def _forward_asyncssh(self) -> None:
        if self.remote_path:
            listener = await self._conn.forward_local_port_to_path("127.0.0.1", self.local_port, self.remote_path)
        else:
            listener = await self._conn.forward_local_port("127.0.0.1", self.local_port, self.remote_host,
                                                           self.remote_port)
        self._listener = listener
        self.local_port = listener.get_port()

    def cipher(self) -> str:
        """The cipher of the asyncssh connection (OpenSSH's ssh offers the same ones in the same order)."""
        return str(self._conn.get_extra_info("send_cipher")) if self._conn else ""

    def run(self, command: str, timeout: float = 60.0) -> str:
        """Run a command on the SSH host and return its standard output.

        Raises
        ------
        TunnelError
            When it exits with an error (its standard error is in the message).
        """
        if self._conn is None or self._loop is None:
            raise TunnelError("The SSH tunnel is not open.")
        result = self._loop.run(self._conn.run(command, check=False), timeout=timeout)
        if result.exit_status != 0:
            raise TunnelError(f"`{command}` failed on {self.host}: {str(result.stderr).strip() or result.exit_status}.")
        return str(result.stdout)

    def _drop(self) -> None:
        if self._ssh is not None:
            ssh, self._ssh = self._ssh, None
            ssh.close()
        self.forwarded_by = None
        if self._conn is not None and self._loop is not None:
            conn, self._conn = self._conn, None
            listener, self._listener = self._listener, None

            async def close() -> None:
                if listener is not None:
                    listener.close()
                conn.close()
                try:
                    await asyncio.wait_for(conn.wait_closed(), 5)
                except (TimeoutError, asyncssh.Error, OSError):
                    pass

            try:
                self._loop.run(close(), timeout=10)
            except (TimeoutError, RuntimeError):
                pass

    def reopen(self) -> Tunnel:
        """Drop the connection (if any) and connect again on the same local port."""
        self._drop()
        return self.open()

    def close(self) -> None:
        """Close the connection, OpenSSH's ssh if it forwards, and the tunnel's thread."""
        self._drop()
        if self._loop is not None:
            self._loop.stop()
            self._loop = None


def connect(host: str, user: str | None = None, *, password: str | None = None, key: str | os.PathLike | None = None,
            port: int | None = None, known_hosts: str | os.PathLike | None = None, config: RemoteConfig | None = None,
            server_user: str | None = None, server_password: str | None = None, token_command: str = TOKEN_COMMAND,
            ssh_config: Sequence[str] | None = None) -> RemoteBackend:
    """Open an SSH tunnel to a server and return a logged-in :class:`RemoteBackend`.

    Parameters
    ----------
    host, user, port
        The SSH login (a ``~/.ssh/config`` alias works).
    password, key
        SSH password and/or private key file; the SSH agent and default keys are tried otherwise.
    known_hosts
        The known_hosts file (``~/.ssh/known_hosts`` by default).
    config
        Where the server listens on the SSH host (``ssh_remote_bind``, ``ssh_remote_port``), the local
        port (``ssh_local_port``) and what forwards it (``ssh_forwarder``, see :class:`Tunnel`).
    server_user, server_password
        Log in with the server's password file instead of minting a token for the SSH user.
    token_command
        What mints a token over SSH.

    Raises
    ------
    HostKeyUnknown
        The first time: show ``exc.host_key.fingerprint``; after :func:`trust_host_key`, call again.
    HostKeyChanged
        When the key differs from the trusted one (refused).
    TunnelError, AuthError
        When SSH login, the tunnel, or getting a token fails.
    """
    cfg = config or RemoteConfig()
    bind = cfg.ssh_remote_bind
    remote_path = bind[5:] if bind.startswith("unix:") else (bind if bind.startswith("/") else None)
    tunnel = Tunnel(host, user, port=port or (cfg.ssh_port if cfg.ssh_port != 22 else None), password=password,
                    client_keys=[str(key)] if key else None, known_hosts=known_hosts, remote_host=bind,
                    remote_port=cfg.ssh_remote_port, remote_path=remote_path, local_port=cfg.ssh_local_port,
                    ssh_config=ssh_config, forwarder=cfg.ssh_forwarder)
    tunnel.open()
    try:
        if server_user:
            return RemoteBackend.login(tunnel.address, server_user, server_password or "", tunnel=tunnel)
        output = tunnel.run(token_command)
        try:
            token = json.loads(output)["token"]
        except (ValueError, KeyError, TypeError):
            raise TunnelError(f"`{token_command}` on {host} did not print a token: {output.strip()[:200]!r}.") from None
        return RemoteBackend(tunnel.address, token, tunnel=tunnel)
    except BaseException:
        tunnel.close()
        raise
