"""An SSH server in this process, for tests and benchmarks of the tunnel (127.0.0.1 only).

:class:`LocalSSHServer` accepts password and public-key logins, forwards connections to
loopback ports and UNIX sockets only, and answers ``multicellpose-server token --json`` by
asking the MultiCellPose server's token socket, exactly as the real command would (so the
token belongs to the OS user running the tests). :meth:`LocalSSHServer.drop` cuts every
connection at once, as a dropped network link would.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import asyncssh

from .auth import request_token
from .tunnel import TOKEN_COMMAND


class LocalSSHServer:
    """An asyncssh server on ``127.0.0.1:<free port>`` in a background thread.

    Parameters
    ----------
    passwords
        ``user -> password`` accepted by password login.
    client_keys
        ``user -> public key objects`` accepted by key login.
    token_socket
        The MultiCellPose server's token socket (answers the token command).
    """

    def __init__(self, passwords: dict[str, str], client_keys: dict[str, list[asyncssh.SSHKey]],
                 token_socket: str | os.PathLike) -> None:
        self.passwords = passwords
        self.client_keys = client_keys
        self.token_socket = Path(token_socket)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.connections: list[asyncssh.SSHServerConnection] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sshd", daemon=True)
        self._thread.start()
        self._acceptor = self._run(self._start())
        self.port = self._acceptor.get_port()

    def _run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self):
        owner = self

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                owner.connections.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return owner.passwords.get(username) == password

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                wanted = key.export_public_key()
                return any(k.export_public_key() == wanted for k in owner.client_keys.get(username, []))

            def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
                return dest_host in ("127.0.0.1", "localhost", "::1")

            def unix_connection_requested(self, dest_path: str) -> bool:
                return True

        return await asyncssh.create_server(_Server, "127.0.0.1", 0, server_host_keys=[self.host_key],
                                            process_factory=self._process, keepalive_interval=2,
                                            keepalive_count_max=3)

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        if process.command != TOKEN_COMMAND:
            process.stderr.write(f"unknown command: {process.command}\n")
            process.exit(127)
            return
        try:
            reply = await asyncio.get_running_loop().run_in_executor(None, request_token, self.token_socket)
        except Exception as exc:  # reported to the client like a failing command
            process.stderr.write(f"{exc}\n")
            process.exit(1)
            return
        process.stdout.write(json.dumps(reply) + "\n")
        process.exit(0)

    def known_hosts_line(self) -> str:
        """The known_hosts line that trusts this server."""
        return f"[127.0.0.1]:{self.port} {self.host_key.export_public_key('openssh').decode().strip()}\n"

    def drop(self) -> None:
        """Cut every open connection (no goodbye), as a dead link would."""
        async def cut() -> None:
            for conn in list(self.connections):
                conn.abort()
            self.connections.clear()

        self._run(cut())

    def close(self) -> None:
        """Stop the server and its thread."""
        async def stop() -> None:
            for conn in list(self.connections):
                conn.abort()
            self._acceptor.close()
            await self._acceptor.wait_closed()

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
