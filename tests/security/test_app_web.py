"""The real app process answers only its own page: Host allow-list, same-origin websocket, session token."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from app.browser import App
from mcp_core.synthetic import write_demo_project

ALIAS = "mcp.test"  # given with --allow-host


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    write_demo_project(root / "project", n_images=2, n_labelled=1, shape=(64, 64))
    app = App(root / "project", root / "home", "--allow-host", ALIAS)
    yield app
    app.stop()


def request(port: int, path: str = "/", *, host: str | None = None, origin: str | None = None,
            cookie: str | None = None, websocket: bool = False) -> tuple[int, dict[str, str]]:
    """Send one raw HTTP/1.1 request (optionally a websocket upgrade); returns the status and headers."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    if origin:
        lines.append(f"Origin: {origin}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if websocket:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    else:
        lines.append("Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for key, _, value in (h.partition(":") for h in head[1:]):
        key = key.strip().lower()
        headers[key] = (headers[key] + "\n" if key in headers else "") + value.strip()
    return int(head[0].split()[1]), headers


WS_PATH = "/_nicegui_ws/socket.io/?EIO=4&transport=websocket"


def cookie_of(server: App) -> str:
    return f"mcp_token_{server.port}={server.token}"


def test_startup_line_prints_a_random_token_url(server):
    assert server.token and len(server.token) >= 16
    assert server.start_url == f"http://127.0.0.1:{server.port}/?token={server.token}"


def test_token_is_exchanged_for_a_strict_httponly_cookie_and_leaves_the_address(server):
    status, headers = request(server.port, f"/trainer?token={server.token}&x=1")
    assert status == 303 and headers["location"] == "/trainer?x=1"
    [cookie] = [c.lower() for c in headers["set-cookie"].split("\n") if c.startswith(f"mcp_token_{server.port}=")]
    assert f"mcp_token_{server.port}={server.token}".lower() in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert request(server.port, "/trainer", cookie=cookie_of(server))[0] == 200


@pytest.mark.parametrize("path", ["/", "/trainer", "/analyzer", "/_nicegui/client/x/y", WS_PATH.replace("websocket", "polling")])
def test_no_token_no_page(server, path):
    assert request(server.port, path)[0] == 401
    assert request(server.port, path, cookie=f"mcp_token_{server.port}=wrong")[0] == 401


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "[::2]", "bad host:x"])
def test_foreign_host_is_refused_even_with_the_token(server, host):
    status, _ = request(server.port, "/", host=host, cookie=cookie_of(server))
    assert status == 403
    assert request(server.port, WS_PATH, host=host, cookie=cookie_of(server), websocket=True,
                   origin=f"http://{host}")[0] == 403


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", ALIAS])
def test_loopback_names_and_allowed_hosts_are_answered(server, host):
    name = f"{host}:{server.port}"
    assert request(server.port, "/", host=name, cookie=cookie_of(server))[0] == 200
    assert request(server.port, WS_PATH, host=name, origin=f"http://{name}", cookie=cookie_of(server),
                   websocket=True)[0] == 101


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", None])
def test_websocket_from_a_foreign_or_missing_origin_is_refused(server, origin):
    assert request(server.port, WS_PATH, origin=origin, cookie=cookie_of(server), websocket=True)[0] == 403


def test_websocket_without_the_token_is_refused(server):
    same = f"http://127.0.0.1:{server.port}"
    assert request(server.port, WS_PATH, origin=same, websocket=True)[0] in (401, 403)
    assert request(server.port, WS_PATH, origin=same, cookie=f"mcp_token_{server.port}=nope",
                   websocket=True)[0] in (401, 403)
    assert request(server.port, WS_PATH + f"&token={server.token}", origin=same, websocket=True)[0] == 101


def test_socketio_client_with_a_page_id_but_no_token_cannot_connect(server):
    """The turn-2 attack: a socket.io client naming a real page's client id, without the token."""
    import re

    import socketio

    status, _ = request(server.port, "/trainer", cookie=cookie_of(server))
    assert status == 200
    page = urllib.request.Request(f"{server.url}/trainer", headers={"Cookie": cookie_of(server)})
    client_id = re.search(r"client_id['\"]\s*:\s*['\"]([0-9a-f-]+)", urllib.request.urlopen(page, timeout=30).read().decode())
    assert client_id, "the page names its client id"
    query = urllib.parse.urlencode({"client_id": client_id.group(1), "tab_id": "t", "document_id": "d",
                                    "next_message_id": 0, "implicit_handshake": "true"})
    attacker = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        attacker.connect(f"{server.url}/?{query}", socketio_path="/_nicegui_ws/socket.io", transports=["websocket"],
                         headers={"Origin": server.url}, wait_timeout=20)
    owner = socketio.Client(reconnection=False)
    owner.connect(f"{server.url}/?client_id={client_id.group(1)}", socketio_path="/_nicegui_ws/socket.io", transports=["websocket"],
                  headers={"Origin": server.url, "Cookie": cookie_of(server)}, wait_timeout=20)
    assert owner.connected
    owner.disconnect()


def test_no_token_is_refused_with_a_non_loopback_host(tmp_path):
    exe = Path(sys.executable).parent / "multicellpose"
    out = subprocess.run([str(exe), str(tmp_path), "--no-browser", "--no-token", "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--no-token is refused" in out.stdout + out.stderr


def test_events_for_another_page_are_dropped_before_the_handler():
    from mcp_app.pages.access import bind_events_to_sockets

    calls = []

    class FakeSio:
        handlers = {"/": {name: (lambda sid, msg, name=name: calls.append((name, sid)))
                          for name in ("event", "javascript_response", "ack", "log")}}

        @staticmethod
        def rooms(sid):
            return [sid, "page-a"] if sid == "sock-a" else [sid]

    bind_events_to_sockets(FakeSio)
    for name, handler in FakeSio.handlers["/"].items():
        handler("sock-b", {"client_id": "page-a"})
        handler("sock-a", "not a dict")
        handler("sock-a", {"client_id": "page-a"})
    assert calls == [(n, "sock-a") for n in ("event", "javascript_response", "ack", "log")]


def test_without_a_token_the_host_and_origin_checks_still_hold(tmp_path):
    write_demo_project(tmp_path / "project", n_images=1, n_labelled=1, shape=(64, 64))
    app = App(tmp_path / "project", tmp_path / "home", "--no-token")
    try:
        assert app.token is None and app.start_url == f"http://127.0.0.1:{app.port}/"
        assert request(app.port, "/trainer")[0] == 200
        assert request(app.port, "/", host="evil.example")[0] == 403
        assert request(app.port, WS_PATH, origin="http://evil.example", websocket=True)[0] == 403
        assert request(app.port, WS_PATH, origin=app.url, websocket=True)[0] == 101
    finally:
        app.stop()


@pytest.mark.parametrize("origin,host,same", [
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True), ("http://localhost", "localhost:80", True),
    ("http://[::1]:5", "[::1]:5", True), ("http://localhost:81", "localhost:80", False),
    ("null", "localhost", False), ("http://evil.example:8080", "127.0.0.1:8080", False),
    ("http://a:x", "a:1", False), ("https://localhost", "localhost:80", False)])
def test_same_origin(origin, host, same):
    from mcp_app.pages.access import same_origin

    assert same_origin(origin, host) is same
