"""App state shared by the pages: the open project, the backend, recent folders. No UI code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcp_core.backend import Backend, LocalBackend, default_home

from .project import Project, Recent


@dataclass
class AppState:
    """The open project and the backend every page talks to."""

    project: Project
    backend: Backend = field(default_factory=LocalBackend)
    recent: Recent = field(default_factory=lambda: Recent(default_home()))

    @property
    def folder(self) -> Path:
        return self.project.folder

    def open_folder(self, folder: str | Path) -> Project:
        """Switch to another project folder."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder.")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise ValueError(f"{folder} cannot be read (permission denied).")
        self.project = Project.open(folder)
        self.recent.add(self.project.folder)
        return self.project

    def use_backend(self, backend: Backend) -> None:
        """Switch backend (local or remote); pages pick it up on their next call."""
        self.backend = backend
