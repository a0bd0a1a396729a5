"""A job's live view: progress, ETA, loss chart, log, cancel, final metrics. Re-attaches by job id."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from nicegui import Client, ui

from mcp_core.backend import Backend
from mcp_core.jobs import FINAL_STATES
from mcp_core.params import JobEvent

from .compute import call
from .job_history import JobHistory

POLL_S = 1.0
HISTORY_POLL_S = 2.0
LOG_LINE_STYLE = "white-space: pre-wrap; overflow-wrap: anywhere"  # long lines wrap instead of being cut off
_PAGE_HISTORY: weakref.WeakKeyDictionary[Client, JobHistory] = weakref.WeakKeyDictionary()


def use_history(history: JobHistory) -> None:
    """Every :class:`JobPanel` built on this page from now on records its job in *history* (the project's)."""
    _PAGE_HISTORY[ui.context.client] = history


def format_seconds(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "–"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def zero_ap_advice(result: dict) -> str | None:
    """A plain explanation and what to change when a finished training scored AP@0.5 0 on its test images.

    ``None`` when the model found objects (or there was no test split to score).
    """
    metrics = result.get("metrics", result) or {}
    if "ap50" not in metrics or metrics["ap50"] > 0:
        return None
    if metrics.get("fp", 0) == 0:
        what = "This model found no objects at all on the test images (AP@0.5 0)."
    else:
        what = (f"None of the {metrics['fp']} objects this model found on the test images matches a labelled one "
                f"(AP@0.5 0).")
    tips = ["train for more epochs",
            "from a random base (tiny), keep its learning rate near 3e-3; 1e-5 suits only a pretrained CellposeSAM",
            "label more images (each training image needs at least 5 masks; aim for a few hundred objects in all)"]
    if result.get("n_train", 99) < 5:
        tips[2] = f"label more images (it trained on {result['n_train']}; aim for a few hundred objects in all)"
    if metrics.get("fp", 0):
        tips.append("check that every object in the labelled images is labelled and the channels fed to the model "
                    "show the objects")
    else:
        tips.append("check that the channels fed to the model show the objects")
    return what + " Try: " + "; ".join(tips) + "."


class JobPanel:
    """Follows one job through ``backend.events(job_id, since)`` and shows it."""

    def __init__(self, backend: Backend, job_id: str, title: str, on_done: Callable[[dict], None] | None = None,
                 on_end: Callable[[str, dict], None] | None = None) -> None:
        self.backend = backend
        self.job_id = job_id
        self.seq = 0
        self.on_done, self.on_end = on_done, on_end
        self.state = "running"
        self.train_loss: list[list[float]] = []
        self.test_loss: list[list[float]] = []
        self.result: dict = {}
        self.title = title
        self.history = _PAGE_HISTORY.get(ui.context.client)
        self.recorded = False  # in the history yet
        with ui.card().classes("w-full") as self.card:
            with ui.row().classes("items-center w-full"):
                ui.label(title).classes("font-bold")
                ui.space()
                self.state_label = ui.label("starting…").classes("text-xs")
                self.cancel_button = ui.button("Cancel", icon="stop", color="negative", on_click=self.cancel
                                               ).props("dense flat no-caps").mark("job-cancel")
            self.progress = ui.linear_progress(value=0, show_value=False).classes("w-full")
            self.eta = ui.label("").classes("text-xs text-gray-600").mark("job-eta")
            self.chart = ui.echart({
                "animation": False,
                "grid": {"left": 40, "right": 10, "top": 25, "bottom": 25},
                "legend": {"data": ["train", "test"], "top": 0},
                "xAxis": {"type": "value", "name": "epoch", "minInterval": 1},
                "yAxis": {"type": "value", "scale": True},
                "series": [{"name": "train", "type": "line", "data": [], "showSymbol": False},
                           {"name": "test", "type": "line", "data": [], "showSymbol": False}],
            }).classes("w-full h-40")
            self.log = ui.log(max_lines=200).classes("w-full h-24 text-xs")
            self.metrics = ui.column().classes("w-full")
        self.timer = ui.timer(POLL_S, self.poll)

    async def record_start(self) -> None:
        """Put the job in the project's history, once (its kind and model as the backend tells them)."""
        self.recorded = True  # whatever happens here, the panel goes on following the job
        try:
            info = await call(self.backend.job, self.job_id)
            kind, model = info.kind, str(info.params.get("model_name") or info.params.get("model") or "")
        except Exception:  # the backend cannot say now: the history keeps the title
            kind, model = "", ""
        try:
            await call(self.history.start, self.job_id, kind, self.title, model)
        except OSError as exc:
            ui.notify(f"The project's job history could not be written: {exc}", type="warning")

    async def poll(self) -> None:
        if self.history is not None and not self.recorded:
            await self.record_start()
        try:
            events: list[JobEvent] = await call(self.backend.events, self.job_id, self.seq)
        except Exception as exc:
            self.state_label.text = f"connection problem: {exc}"
            return
        for ev in events:
            self.seq = max(self.seq, ev.seq)
            self.handle(ev)
        if events:
            self.chart.update()

    def handle(self, ev: JobEvent) -> None:
        d = ev.data
        if ev.kind == "progress":
            frac = d.get("fraction")
            if frac is None and d.get("total"):
                frac = d.get("done", d.get("step", 0)) / d["total"]
            if frac is not None:
                self.progress.value = float(frac)
            self.eta.text = f"{d.get('message', '')}  elapsed {format_seconds(d.get('elapsed'))} · ETA {format_seconds(d.get('eta'))}"
            self.state_label.text = "running"
        elif ev.kind == "loss":
            epoch = d.get("epoch", len(self.train_loss))
            if d.get("train_loss") is not None:
                self.chart.options["series"][0]["data"].append([epoch, d["train_loss"]])
            if d.get("test_loss") is not None:
                self.chart.options["series"][1]["data"].append([epoch, d["test_loss"]])
        elif ev.kind == "log":
            self.log.push(d.get("message", ""), style=LOG_LINE_STYLE)
        elif ev.kind == "artifact":
            self.log.push(f"saved {d.get('path', '')}", style=LOG_LINE_STYLE)
        elif ev.kind in ("done", "failed", "state"):
            state = d.get("state", "done" if ev.kind == "done" else "failed" if ev.kind == "failed" else None)
            if state:
                self.finish(state, d)

    def finish(self, state: str, data: dict) -> None:
        if state not in FINAL_STATES:
            return
        self.state = state
        self.timer.active = False
        self.cancel_button.disable()
        self.state_label.text = state
        self.eta.text = ""
        if self.history is not None:
            try:
                self.history.finish(self.job_id, state, str(data.get("model") or ""), data.get("metrics") or {})
            except OSError as exc:
                ui.notify(f"The project's job history could not be written: {exc}", type="warning")
        if state == "done":
            self.progress.value = 1.0
            self.result = data
            self.show_metrics(data.get("metrics", data), zero_ap_advice(data))
            if self.on_done:
                self.on_done(data)
        elif state == "failed":
            ui.notify(f"The job failed: {data.get('error', 'unknown error')}", type="negative", multi_line=True)
            self.log.push(f"FAILED: {data.get('error', '')}", style=LOG_LINE_STYLE)
        if self.on_end:
            self.on_end(state, data)

    def show_metrics(self, metrics: dict, advice: str | None = None) -> None:
        self.metrics.clear()
        with self.metrics:
            if advice:
                ui.label(advice).classes("text-sm text-negative").mark("zero-ap-advice")
            parts = []
            if "ap50" in metrics:
                parts.append(f"AP@0.5 {metrics['ap50']:.3f}")
            if "error_rate" in metrics:
                parts.append(f"error rate {metrics['error_rate']:.3f}")
            if parts:
                ui.label(" · ".join(parts)).classes("font-medium")
            per_class = metrics.get("per_class") or {}
            if per_class:
                rows = [{"class": k, **{m: round(float(v.get(m, 0)), 3) for m in ("precision", "recall", "f1")}}
                        for k, v in per_class.items()]
                ui.table(columns=[{"name": c, "label": c, "field": c} for c in ("class", "precision", "recall", "f1")],
                         rows=rows).props("dense flat")

    async def cancel(self) -> None:
        try:
            await call(self.backend.cancel, self.job_id)
        except Exception as exc:
            ui.notify(f"Could not cancel: {exc}", type="negative")
            return
        ui.notify("Cancelling…")


async def reattach_jobs(state, kind: str, history: JobHistory) -> list[JobPanel]:
    """Show a panel for every unfinished job of *kind* in this project's *history* (after a reload or a reconnect).

    Jobs started for other folders are not shown. Jobs of the history that ended while no page followed them
    get their end recorded (state, model, metrics).
    """
    try:
        jobs = await call(state.backend.jobs)
    except Exception as exc:
        ui.notify(f"Could not list jobs: {exc}", type="warning")
        return []
    records = await call(history.records)
    titles = {r.job_id: r.title for r in records}
    open_ended = {r.job_id for r in records if r.state not in FINAL_STATES}
    for j in jobs:
        if j.job_id in open_ended and j.state in FINAL_STATES:
            await call(history.finish, j.job_id, j.state, str(j.result.get("model") or ""),
                       j.result.get("metrics") or {})
    return [JobPanel(state.backend, j.job_id, titles[j.job_id])
            for j in jobs if j.kind == kind and j.state not in FINAL_STATES and j.job_id in titles]


class JobHistoryView:
    """The project's jobs, newest first: title, state, model, metrics (follows the history file)."""

    def __init__(self, history: JobHistory) -> None:
        self.history = history
        self.seen: int | None = -1
        with ui.expansion("Job history", icon="history", value=True).classes("w-full"):
            self.box = ui.column().classes("w-full gap-1").mark("job-history")
        self.refresh()
        ui.timer(HISTORY_POLL_S, self.refresh)

    def refresh(self) -> None:
        try:
            stamp = self.history.path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self.seen:
            return
        self.seen = stamp
        self.box.clear()
        with self.box:
            records = self.history.records()
            if not records:
                ui.label("No jobs for this project yet.").classes("text-xs text-gray-500")
            for rec in records:
                with ui.column().classes("gap-0 w-full"):
                    ui.label(rec.title).classes("text-xs font-medium")
                    ui.label(rec.summary()).classes("text-xs text-gray-600")
