"""The flow the Trainer and the Analyzer share: a workspace page whose side panel is a small view class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from mcp_core.filenames import LabelKind
from mcp_core.params import JobKind

from ..job_history import JobHistory
from ..job_panel import reattach_jobs, use_history
from ..state import AppState
from ..workspace import Workspace
from .layout import header


class SidePanel:
    """A workspace page's side panel: :meth:`build` sets :attr:`model` (a model picker), :attr:`jobs` (the job
    panels' column) and :attr:`channels` (a channel picker); handlers are methods.

    Subclasses name the page (:attr:`title`), the label files it edits (:attr:`kind`) and the jobs it
    re-attaches to (:attr:`job_kind`).
    """

    title: ClassVar[str]
    kind: ClassVar[LabelKind]
    job_kind: ClassVar[JobKind]

    def __init__(self, state: AppState, ws: Workspace, history: JobHistory) -> None:
        self.state, self.ws, self.history = state, ws, history

    def build(self) -> None:
        raise NotImplementedError

    def layout(self) -> dict[str, Any]:
        """Keywords for :meth:`Workspace.build_layout` (the page's shortcuts, a bottom panel)."""
        return {}

    def keys(self) -> dict[str, Callable]:
        """The page's own shortcuts for :meth:`Workspace.bind_keys`."""
        return {}


async def workspace_page(state: AppState, side_class: type[SidePanel]) -> None:
    """Build the page: header, workspace with the side panel, keys, then models, jobs and the first image."""
    bar = header(state, side_class.title)
    ws = Workspace(state.project, kind=side_class.kind)
    history = JobHistory(state.folder)
    use_history(history)  # its job panels record there
    side = side_class(state, ws, history)
    ws.build_layout(bar, side.build, **side.layout())
    ws.on_open.append(side.channels.refresh)  # the picker names the open image's channels
    ws.bind_keys(side.keys())
    await side.model.refresh()
    with side.jobs:
        await reattach_jobs(state, side.job_kind, history)
    await ws.start(state.focus)
