"""App state shared by the pages: the open project, the backend, recent folders. No UI code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcp_core.backend import Backend, LocalBackend, default_home
from mcp_core.io.registry import reader_for

from .project import Project, Recent


@dataclass
class AppState:
    """The open project and the backend every page talks to."""

    project: Project
    backend: Backend = field(default_factory=LocalBackend)
    recent: Recent = field(default_factory=lambda: Recent(default_home()))
    #: An image the next Trainer or Analyzer page opens first (set by opening a single image file).
    focus: Path | None = None

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
        self.focus = None
        return self.project

    def open_path(self, path: str | Path) -> Project:
        """Open a folder, or an image file: its folder becomes the project and the image is shown first.

        Raises
        ------
        ValueError
            When *path* does not exist, cannot be read, or is a file no reader knows.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise ValueError(f"{path} does not exist.")
        if path.is_dir():
            return self.open_folder(path)
        if reader_for(path) is None:
            raise ValueError(f"{path.name} is not an image this app can read (see `multicellpose formats`).")
        if not os.access(path, os.R_OK):
            raise ValueError(f"{path} cannot be read (permission denied).")
        project = self.open_folder(path.parent)
        self.focus = path.resolve()
        return project

    def use_backend(self, backend: Backend) -> None:
        """Switch backend (local or remote); pages pick it up on their next call."""
        self.backend = backend
