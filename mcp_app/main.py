"""Start the NiceGUI app on a project folder (the demo project when none is given)."""

from __future__ import annotations

import argparse
import socket
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
    from nicegui import app, run, ui

    from . import pages
    from .workspace import Workspace

    folder = args.folder or demo_folder()
    if not folder.is_dir():
        print(f"error: {folder} is not a folder")
        return 2
    state = AppState(project=Project.open(folder))
    state.recent.add(state.project.folder)
    pages.register(state, token=args.token)
    app.on_shutdown(Workspace.flush_all)
    run.process_pool_start_method = "spawn"  # fork is unsafe in a threaded server (workers inherit its sockets)
    port = args.port or free_port(args.host)
    print(f"MultiCellPose on http://{args.host}:{port}/  (project {state.folder})", flush=True)
    ui.run(host=args.host, port=port, title="MultiCellPose", show=not (args.no_browser or args.native),
           native=args.native, reload=False, reconnect_timeout=30, favicon="🔬", storage_secret=args.token or "mcp")
    return 0
