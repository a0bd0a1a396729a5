"""A measurement table with CSV download and plots (histogram, scatter) coloured by class.

Clicking a point in the scatter plot calls back with that object's (image, frame, mask id), so
the page can open it and highlight the object on the canvas.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import numpy as np
import pandas as pd
from nicegui import ui

ID_COLUMNS = ("image", "frame", "mask_id", "class_id", "class_name")
MAX_TABLE_ROWS = 5000


class ResultsView:
    """Table, download and plots of one measurement DataFrame."""

    def __init__(self, on_pick: Callable[[str, str, int], Awaitable[None] | None] | None = None) -> None:
        self.df = pd.DataFrame()
        self.on_pick = on_pick
        with ui.column().classes("w-full gap-1") as self.box:
            with ui.row().classes("items-center w-full"):
                self.summary = ui.label("No measurements yet.").classes("text-sm")
                ui.space()
                self.download_button = ui.button("CSV", icon="download", on_click=self.download
                                                 ).props("dense flat no-caps").mark("download-csv")
            self.table = ui.table(columns=[], rows=[], pagination=10).props("dense flat").classes("w-full text-xs")
            with ui.row().classes("items-center w-full no-wrap"):
                self.x = ui.select([], label="X", on_change=self.plot).props("dense").classes("w-1/2")
                self.y = ui.select([], label="Y (scatter)", on_change=self.plot).props("dense").classes("w-1/2")
            self.hist = ui.echart(self._empty()).classes("w-full h-48")
            self.scatter = ui.echart(self._empty()).classes("w-full h-56")
            self.scatter.on_point_click(self._picked)

    @staticmethod
    def _empty() -> dict:
        return {"animation": False, "xAxis": {}, "yAxis": {}, "series": []}

    def numeric_columns(self) -> list[str]:
        return [c for c in self.df.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(self.df[c])]

    def show(self, df: pd.DataFrame) -> None:
        self.df = df.reset_index(drop=True)
        n_img = df["image"].nunique() if "image" in df else 0
        self.summary.text = f"{len(df)} objects in {n_img} image(s)" + (
            f" (table shows the first {MAX_TABLE_ROWS})" if len(df) > MAX_TABLE_ROWS else "")
        shown = self.df.head(MAX_TABLE_ROWS).copy()
        shown.insert(0, "_row", np.arange(len(shown)))
        self.table.columns = [{"name": c, "label": c, "field": c, "sortable": True} for c in shown.columns if c != "_row"]
        self.table.rows = shown.round(4).replace({np.nan: None}).to_dict("records")
        self.table.row_key = "_row"
        self.table.update()
        numeric = self.numeric_columns()
        self.x.options, self.y.options = numeric, numeric
        self.x.value = next((c for c in numeric if c.startswith("area")), numeric[0] if numeric else None)
        self.y.value = next((c for c in numeric if "mean" in c), numeric[1] if len(numeric) > 1 else None)
        self.x.update()
        self.y.update()
        self.plot()

    def plot(self) -> None:
        df, x, y = self.df, self.x.value, self.y.value
        if df.empty or not x:
            return
        groups = df.groupby("class_name") if "class_name" in df else [("all", df)]
        edges = np.histogram_bin_edges(df[x].dropna(), bins=30)
        centres = ((edges[:-1] + edges[1:]) / 2).round(4).tolist()
        self.hist.options.update({
            "legend": {"top": 0}, "tooltip": {}, "grid": {"left": 40, "right": 10, "top": 25, "bottom": 25},
            "xAxis": {"type": "category", "data": centres, "name": x},
            "yAxis": {"type": "value", "name": "count"},
            "series": [{"name": str(name), "type": "bar", "stack": "all",
                        "data": np.histogram(g[x].dropna(), bins=edges)[0].tolist()} for name, g in groups],
        })
        self.hist.update()
        if not y:
            return
        self.scatter.options.update({
            "legend": {"top": 0}, "tooltip": {}, "grid": {"left": 45, "right": 10, "top": 25, "bottom": 30},
            "xAxis": {"type": "value", "name": x, "scale": True}, "yAxis": {"type": "value", "name": y, "scale": True},
            "series": [{"name": str(name), "type": "scatter", "symbolSize": 5,
                        "data": [[float(a), float(b), int(i)] for a, b, i in zip(g[x], g[y], g.index)]}
                       for name, g in (df.groupby("class_name") if "class_name" in df else [("all", df)])],
        })
        self.scatter.update()

    async def _picked(self, e) -> None:
        if self.on_pick is None or not e.data:
            return
        row = self.df.loc[int(e.data[2])]
        picked = self.on_pick(str(row.get("image", "")), str(row.get("frame", "") or ""), int(row["mask_id"]))
        if inspect.isawaitable(picked):
            await picked

    def download(self) -> None:
        if self.df.empty:
            ui.notify("Run a measurement first.", type="warning")
            return
        ui.download.content(self.df.to_csv(index=False).encode(), "measurements.csv", "text/csv")
