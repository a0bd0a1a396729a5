"""``multicellpose-server``: run a MultiCellPose server and manage who may use it.

``serve``
    Listen on ``server_bind`` (127.0.0.1 or a UNIX socket by default) until interrupted. Files
    are written private to the server's account (umask 077); job workers stop when it dies.
``token``
    Print an access token for the OS user running the command (asks the running server over
    its local socket; the kernel tells it who is asking). Run it through your SSH login.
``adduser``
    Add a user (or change a password) in the server's scrypt password file.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
import time

from mcp_core.errors import MCPError

from .config import load_config


def _serve(args: argparse.Namespace) -> int:
    from mcp_core.job_worker import PARENT_ENV
    from mcp_core.threads import configure_environment

    from .server import start_server

    os.umask(0o077)  # every file this process and its job workers write is private to the server's account
    os.environ[PARENT_ENV] = str(os.getpid())  # job workers stop when this process dies
    configure_environment()  # job workers' torch threads: the cores really available, none spinning
    config = load_config(args.config)
    server = start_server(config, bind=args.bind)
    print(f"MultiCellPose server on {server.address}; storage {config.storage_root()}; "
          f"tokens from {config.token_socket()}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)
    server.stop()
    print("stopped", flush=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from .auth import request_token

    config = load_config(args.config)
    reply = request_token(args.socket or config.token_socket())
    if args.json:
        print(json.dumps(reply))
    else:
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(reply["expires"]))
        print(f"{reply['token']}\n(user {reply['user']}, valid until {expires})")
    return 0


def _adduser(args: argparse.Namespace) -> int:
    from .auth import PasswordFile

    config = load_config(args.config)
    password = args.password_stdin and sys.stdin.readline().rstrip("\n")
    if not password:
        password = getpass.getpass(f"Password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    PasswordFile(config.storage_root() / "auth" / "passwords.json").set(args.user, password)
    print(f"User {args.user} can now log in.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``multicellpose-server``."""
    parser = argparse.ArgumentParser(prog="multicellpose-server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="remote_config.json to use (default: see mcp_remote.config)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--bind", help="override server_bind (host:port or unix:/path)")
    p.set_defaults(func=_serve)
    p = sub.add_parser("token", help="print an access token for the current OS user")
    p.add_argument("--json", action="store_true", help="print {token, user, expires} as JSON")
    p.add_argument("--socket", help="the server's token socket (default: <token_socket_dir>/token.sock)")
    p.set_defaults(func=_token)
    p = sub.add_parser("adduser", help="add a user to the password file (or change their password)")
    p.add_argument("user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=_adduser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``multicellpose-server``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MCPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
