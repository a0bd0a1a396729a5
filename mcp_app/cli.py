"""The ``multicellpose`` command: the app by default, plus headless subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcp_core import cli as core_cli

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multicellpose",
        description="Label, train, segment and measure cells. With no subcommand, starts the app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    core_cli.register(sub)
    app = sub.add_parser("app", help="start the app (the default)")
    add_app_arguments(app)
    app.set_defaults(func=_app)
    return parser


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", type=Path, help="project folder (default: the offline demo project)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser (remote node)")
    p.add_argument("--native", action="store_true", help="open a desktop window (pywebview)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer to this host name (repeatable; loopback names and --host always work)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", default=None, help="the access token (default: a random one per launch)")
    token.add_argument("--no-token", action="store_true", help="no token (refused with a non-loopback --host)")


def _app(args: argparse.Namespace) -> int:
    from .main import launch

    return launch(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in {*commands, "-h", "--help"}:
        argv = ["app", *argv]
    args = parser.parse_args(argv)
    return core_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
