"""Who is calling: bearer tokens, the scrypt password file, login throttling, peer credentials.

Tokens are random 256-bit strings; the server keeps only their sha256 with the user name and
expiry (``<storage>/auth/tokens/<sha256>.json``), so a copy of those files lets no one in. A token is minted

* for the OS user who asks over the server's local UNIX socket (``multicellpose-server token``,
  run through the user's own SSH login): the kernel reports the caller's uid (``SO_PEERCRED``),
  so nobody can ask for someone else's token; or
* by ``Auth.Login`` with a name and password from the scrypt password file
  (``multicellpose-server adduser``), for sites where people share an OS account.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import socket
import struct
import threading
import time
from pathlib import Path

from mcp_core.atomic import atomic_write_text
from mcp_core.errors import MCPError, ParameterError

USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
DIGEST = re.compile(r"[0-9a-f]{64}")
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _read_json_dict(path: Path, what: str) -> dict[str, dict]:
    """A JSON object file as a dict: empty when the file does not exist, an error when it is unreadable."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MCPError(f"The {what} {path} is unreadable: {exc}.") from exc
    return data if isinstance(data, dict) else {}


class AuthError(MCPError):
    """A token or password is missing, wrong or expired, or login is throttled."""


def check_user_name(name: str) -> str:
    """*name* when it is a valid user name (letters, digits, ``_ . -``; not starting with ``.`` or ``-``).

    Raises
    ------
    ParameterError
        Otherwise.
    """
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise ParameterError(f"{name!r} is not a valid user name (letters, digits, '_', '.', '-'; up to 64).")
    return name


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Minted tokens, each kept as its sha256 digest in a file of its own (``<digest>.json``, mode 0600).

    Minting writes one small file and revoking deletes one, so the store is never rewritten whole.
    Expired tokens are deleted when the next token is minted; a user with ``max_per_user`` live
    tokens loses the oldest when a new one is minted.

    Parameters
    ----------
    folder
        The folder of token files (created on the first token).
    lifetime_s
        How long a new token is valid.
    max_per_user
        Live tokens one user may have.
    """

    def __init__(self, folder: str | os.PathLike, lifetime_s: float = 30 * 86400, max_per_user: int = 20) -> None:
        self.folder = Path(folder)
        self.lifetime_s = lifetime_s
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        self._tokens: dict[str, dict] = {}
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            entry = _read_json_dict(path, "token file")
            if DIGEST.fullmatch(path.stem) and isinstance(entry.get("expires"), int | float) and "user" in entry:
                self._tokens[path.stem] = entry

    def _forget(self, digest: str) -> None:
        self._tokens.pop(digest, None)
        (self.folder / f"{digest}.json").unlink(missing_ok=True)

    def mint(self, user: str, via: str) -> tuple[str, float]:
        """A new token for *user* (*via*: how the user proved who they are); returns ``(token, expires)``."""
        check_user_name(user)
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            for digest in [d for d, e in self._tokens.items() if e["expires"] <= now]:
                self._forget(digest)
            mine = sorted((e["created"], d) for d, e in self._tokens.items() if e["user"] == user)
            for _, digest in mine[:max(0, len(mine) - self.max_per_user + 1)]:
                self._forget(digest)
            entry = {"user": user, "created": now, "expires": now + self.lifetime_s, "via": via}
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, mode=0o700)
            atomic_write_text(self.folder / f"{_digest(token)}.json", json.dumps(entry))
            self._tokens[_digest(token)] = entry
        return token, entry["expires"]

    def user(self, token: str) -> str:
        """The user a token belongs to.

        Raises
        ------
        AuthError
            When the token is unknown or expired.
        """
        entry = self._tokens.get(_digest(token)) if token else None
        if entry is None:
            raise AuthError("The access token is not valid; get a new one with `multicellpose-server token`.")
        if entry["expires"] <= time.time():
            raise AuthError("The access token has expired; get a new one with `multicellpose-server token`.")
        return entry["user"]

    def revoke(self, token: str) -> None:
        """Forget a token."""
        with self._lock:
            self._forget(_digest(token))


class PasswordFile:
    """``user -> scrypt hash`` in a JSON file readable by the server's account only."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict]:
        return _read_json_dict(self.path, "password file")

    def set(self, user: str, password: str) -> None:
        """Add a user or change their password.

        Raises
        ------
        ParameterError
            For an invalid user name or a password shorter than 8 characters.
        """
        check_user_name(user)
        if len(password) < 8:
            raise ParameterError("The password must have at least 8 characters.")
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT)
        with self._lock:
            data = self._read()
            data[user] = {"salt": salt.hex(), "hash": digest.hex(), **SCRYPT}
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_text(self.path, json.dumps(data, indent=1))
            os.chmod(self.path, 0o600)

    def verify(self, user: str, password: str) -> bool:
        """Whether *password* is *user*'s (constant-time comparison; unknown users cost the same)."""
        entry = self._read().get(user) if isinstance(user, str) else None
        salt = bytes.fromhex(entry["salt"]) if entry else b"\0" * 16
        params = {k: int(entry[k]) for k in ("n", "r", "p", "dklen")} if entry else SCRYPT
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **params)
        return entry is not None and hmac.compare_digest(digest.hex(), entry["hash"])


class LoginThrottle:
    """Refuses logins for a key (a user, a peer) after repeated failures.

    An attempt is admitted by :meth:`begin` and counts as a failure until :meth:`end` says
    otherwise, so concurrent attempts never check more passwords than ``max_failures``. After
    ``max_failures`` failures within ``window_s``, attempts are refused until the window has
    passed since the last failure.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = times
        return times

    def begin(self, key: str) -> None:
        """Admit one attempt for *key*.

        Raises
        ------
        AuthError
            When failures plus attempts in progress have reached the limit.
        """
        now = time.time()
        with self._lock:
            times = self._recent(key, now)
            if len(times) + self._pending.get(key, 0) >= self.max_failures:
                wait = int(self.window_s - (now - times[-1])) + 1 if times else 1
                raise AuthError(f"Too many failed logins; try again in {wait} s.")
            self._pending[key] = self._pending.get(key, 0) + 1

    def end(self, key: str, ok: bool | None) -> None:
        """Close an attempt: *ok* True forgets *key*'s failures, False counts one, None counts nothing."""
        with self._lock:
            left = self._pending.get(key, 1) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)
            if ok:
                self._failures.pop(key, None)
            elif ok is False:
                self._recent(key, time.time()).append(time.time())


# ------------------------------------------------------------------------------ peer credentials
def peer_user(conn: socket.socket) -> str:
    """The OS user name at the other end of a connected local UNIX socket (Linux ``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return pwd.getpwuid(uid).pw_name


class TokenSocket:
    """A thread answering each connection on a UNIX socket with a token for the connecting OS user.

    Parameters
    ----------
    path
        The socket file; its folder is created (mode 0755) when missing. The socket is
        world-connectable: the kernel, not the caller, says who is asking.
    tokens
        Where tokens are minted.
    """

    def __init__(self, path: str | os.PathLike, tokens: TokenStore) -> None:
        self.path = Path(path)
        self.tokens = tokens
        if not self.path.parent.is_dir():  # its own folder, which every OS user may pass through
            self.path.parent.mkdir(parents=True)
            os.chmod(self.path.parent, 0o755)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, 0o666)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, name="token-socket", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    user = peer_user(conn)
                    token, expires = self.tokens.mint(user, via="peer-credentials")
                    reply = {"token": token, "user": user, "expires": expires}
                except (OSError, KeyError, MCPError) as exc:
                    reply = {"error": f"Cannot mint a token: {exc}"}
                try:
                    conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")
                except OSError:
                    pass

    def close(self) -> None:
        """Stop answering and remove the socket file."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        try:
            self.path.unlink()
        except OSError:
            pass


def request_token(path: str | os.PathLike, timeout: float = 10.0) -> dict:
    """Ask the server's token socket for a token for the current OS user: ``{token, user, expires}``.

    Raises
    ------
    AuthError
        When no server answers there or it refuses.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise AuthError(f"No MultiCellPose server answers on {path}: {exc}. Is `multicellpose-server serve` running?") from exc
    try:
        reply = json.loads(data)
    except ValueError as exc:
        raise AuthError(f"The server on {path} sent an unreadable reply.") from exc
    if "error" in reply:
        raise AuthError(reply["error"])
    return reply
