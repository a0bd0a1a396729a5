"""A project's job history: the training and segmentation jobs started for its folder, newest first.

Kept in ``<folder>/multicellpose_jobs.json`` (written atomically), so finished jobs and their metrics
survive leaving the page and restarting the app; the pages list it and re-attach only to jobs in it,
so a job started for another folder never shows up in this project.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from mcp_core.atomic import atomic_write_text

HISTORY_FILE = "multicellpose_jobs.json"
#: Entries kept (the oldest are dropped beyond it).
MAX_ENTRIES = 200
_LOCK = threading.Lock()  # one read-modify-write at a time (two tabs of this app on one project)


@dataclasses.dataclass
class JobRecord:
    """One job of the project as the history keeps it."""

    job_id: str
    kind: str  # "train" or "batch"
    title: str
    state: str = "running"
    model: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float = 0.0
    ended: float | None = None

    def summary(self) -> str:
        """One line: state, model, AP@0.5 and error rate when known, start time."""
        parts = [self.state]
        if self.model:
            parts.append(self.model)
        for key, label in (("ap50", "AP@0.5"), ("error_rate", "error rate")):
            if isinstance(self.metrics.get(key), (int, float)):
                parts.append(f"{label} {self.metrics[key]:.3f}")
        parts.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)))
        return " · ".join(parts)


class JobHistory:
    """The job history file of one project folder."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / HISTORY_FILE

    def records(self) -> list[JobRecord]:
        """Every job, newest first (entries that cannot be read are left out)."""
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return []
        names = {f.name for f in dataclasses.fields(JobRecord)}
        out = []
        for entry in raw if isinstance(raw, list) else []:
            try:
                rec = JobRecord(**{k: v for k, v in entry.items() if k in names})
            except (TypeError, AttributeError):
                continue
            if isinstance(rec.job_id, str) and isinstance(rec.started, (int, float)) and isinstance(rec.metrics, dict):
                out.append(rec)
        return sorted(out, key=lambda r: r.started, reverse=True)

    def ids(self) -> set[str]:
        """The ids of this project's jobs."""
        return {r.job_id for r in self.records()}

    def start(self, job_id: str, kind: str, title: str, model: str = "") -> None:
        """Add a job that has just started (kept as it is when the history has it already)."""
        self._change(job_id, lambda old: old or JobRecord(job_id, kind, title, model=model, started=time.time()))

    def finish(self, job_id: str, state: str, model: str = "", metrics: dict[str, Any] | None = None) -> None:
        """Record a job's end: its final state, the model it made or used, its metrics."""
        def end(old: JobRecord | None) -> JobRecord:
            rec = old or JobRecord(job_id, "", job_id, started=time.time())
            return dataclasses.replace(rec, state=state, model=model or rec.model, metrics=dict(metrics or rec.metrics),
                                       ended=time.time())

        self._change(job_id, end)

    def _change(self, job_id: str, change) -> None:
        with _LOCK:
            records = {r.job_id: r for r in self.records()}
            records[job_id] = change(records.get(job_id))
            keep = sorted(records.values(), key=lambda r: r.started, reverse=True)[:MAX_ENTRIES]
            atomic_write_text(self.path, json.dumps([dataclasses.asdict(r) for r in keep], indent=1, default=str))
