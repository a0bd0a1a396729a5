"""Start the NiceGUI app on a project folder (the demo project when none is given)."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from mcp_core.backend import default_home

from .project import Project
from .state import AppState


def demo_folder() -> Path:
    """The offline demo project, written on first use."""
    from mcp_core.synthetic import write_demo_project

    folder = default_home() / "demo"
    if not any(folder.glob("*.tif")):
        write_demo_project(folder)
    return folder


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace) -> int:
    """Serve the app; returns when the server stops."""
    from mcp_remote.config import is_loopback_host

    if args.no_token and not is_loopback_host(args.host):
        print(f"error: --no-token is refused with --host {args.host}: anyone who can reach it could drive the app.",
              file=sys.stderr)
        return 2
    folder = args.folder or demo_folder()
    if not folder.is_dir():
        print(f"error: {folder} is not a folder.", file=sys.stderr)
        return 1
    if not os.access(folder, os.R_OK | os.X_OK):
        print(f"error: {folder} cannot be read (permission denied).", file=sys.stderr)
        return 1
    from nicegui import app, run, ui

    from . import pages
    from .pages.access import AccessPolicy, install
    from .workspace import Workspace

    state = AppState(project=Project.open(folder))
    state.recent.add(state.project.folder)
    pages.register(state)
    token = None if args.no_token else args.token or secrets.token_urlsafe(24)
    port = args.port or free_port(args.host)
    install(AccessPolicy.build(args.host, port, token, tuple(args.allow_host)))
    app.on_shutdown(Workspace.flush_all)
    run.process_pool_start_method = "spawn"  # fork is unsafe in a threaded server (workers inherit its sockets)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    path = f"/?token={token}" if token else "/"
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}{path}"
    print(f"MultiCellPose on {url}  (project {state.folder})", flush=True)
    if args.native:
        app.native.window_args["url"] = url
    ui.run(host=args.host, port=port, title="MultiCellPose", show=False if args.no_browser or args.native else path,
           native=args.native, reload=False, reconnect_timeout=30, favicon="🔬",
           storage_secret=secrets.token_urlsafe(24))
    return 0
