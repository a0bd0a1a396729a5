"""Who may drive the app: a Host allow-list, same-origin websockets and a session token.

Every HTTP request and websocket upgrade passes :class:`AccessGuard` (an ASGI middleware) before
NiceGUI sees it: an unknown ``Host`` (DNS rebinding) or a foreign ``Origin`` gets 403, a missing
or wrong token 401. A page request carrying ``?token=`` is answered with an HttpOnly
SameSite=Strict cookie and a redirect to the same address without the token, as Jupyter does.
On the socket.io layer, :func:`bind_events_to_sockets` drops every message whose ``client_id``
is not the page that socket connected for, before NiceGUI's handlers run.
"""

from __future__ import annotations

import hmac
import inspect
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(value: str) -> str | None:
    """The host of a ``Host`` header or URL netloc, lower case, without port or brackets; None if malformed."""
    try:
        parts = urlsplit("//" + value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parts.hostname or None


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the host and port of the ``Host`` header (default ports filled in)."""
    try:
        o = urlsplit(origin)
        h = urlsplit(f"{o.scheme}://{host}")
        default = {"http": 80, "https": 443}.get(o.scheme)
        return bool(o.hostname) and o.hostname == h.hostname and (o.port or default) == (h.port or default)
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """The names the app answers to and the token it requires (``None``: no token).

    Parameters
    ----------
    hosts
        Allowed ``Host`` names (lower case, IPv6 without brackets).
    token
        The session token, or ``None`` when the app runs without one.
    cookie
        Name of the cookie that carries the token (per port: two apps on one machine do not clash).
    """

    hosts: frozenset[str]
    token: str | None
    cookie: str

    @classmethod
    def build(cls, bind_host: str, port: int, token: str | None, allow_hosts: tuple[str, ...] = ()) -> AccessPolicy:
        """The policy for an app bound to *bind_host*:*port*, also answering to *allow_hosts*."""
        names = {h.strip("[]").lower() for h in (*LOOPBACK_NAMES, bind_host, *allow_hosts)}
        return cls(frozenset(names), token, f"mcp_token_{port}")

    def refusal(self, kind: str, headers: Headers, query_token: str | None) -> tuple[int, str] | None:
        """Why a request is refused, as (HTTP status, sentence), or ``None`` when it may pass."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 403, f"MultiCellPose does not answer to the host name {host!r}."
        origin = headers.get("origin")
        if origin is None and kind == "websocket":
            return 403, "MultiCellPose accepts websockets only from its own page (no Origin header)."
        if origin is not None and not same_origin(origin, host):
            return 403, "MultiCellPose accepts requests only from its own page."
        if self.token is not None:
            cookie = _cookie(headers, self.cookie)
            if not any(given and hmac.compare_digest(given.encode(), self.token.encode())
                       for given in (query_token, cookie)):
                return 401, "MultiCellPose: open the address the app printed at startup (it ends in ?token=...)."
        return None


def _cookie(headers: Headers, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    return jar[name].value if name in jar else None


class AccessGuard:
    """ASGI middleware enforcing an :class:`AccessPolicy` on HTTP requests and websocket upgrades."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query_token = next((v for k, v in query if k == "token"), None)
        refused = self.policy.refusal(scope["type"], headers, query_token)
        if refused is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": refused[1]})
            else:
                await PlainTextResponse(refused[1], status_code=refused[0])(scope, receive, send)
            return
        if query_token is not None and scope["type"] == "http" and scope["method"] in ("GET", "HEAD") \
                and not scope["path"].startswith("/_nicegui"):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.policy.cookie, query_token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def bind_events_to_sockets(sio: Any) -> None:
    """Drop socket.io messages naming a page other than the one their socket shook hands for.

    NiceGUI's handlers look the page up by the message's ``client_id``; after this, a socket can
    only reach the page whose room it joined during the handshake.
    """
    handlers = sio.handlers["/"]
    for name in ("event", "javascript_response", "ack", "log"):
        inner = handlers[name]
        if inspect.iscoroutinefunction(inner):
            raise TypeError(f"NiceGUI's {name!r} socket handler became a coroutine; update bind_events_to_sockets.")

        def checked(sid: str, msg: Any, *rest: Any, _inner=inner) -> Any:
            if isinstance(msg, dict) and msg.get("client_id") in sio.rooms(sid):
                return _inner(sid, msg, *rest)
            return None

        handlers[name] = checked


def install(policy: AccessPolicy) -> None:
    """Put the guard in front of every route of the NiceGUI app (call before ``ui.run``)."""
    from nicegui import app, core

    app.add_middleware(AccessGuard, policy=policy)
    bind_events_to_sockets(core.sio)
