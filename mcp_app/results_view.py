"""A measurement table with a column chooser and CSV download, and plots (histogram, scatter) beside it.

Plots are coloured as the canvas colours the classes; a point's tooltip names its image, frame and
mask id. Clicking a point in the scatter plot calls back with that object's (image, frame, mask id),
so the page can open it and highlight the object on the canvas.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Awaitable, Callable, Mapping

import numpy as np
import pandas as pd
from nicegui import ui

ID_COLUMNS = ("image", "frame", "mask_id", "class_id", "class_name")
MAX_TABLE_ROWS = 5000
#: Measurement columns the table shows at first besides the ids; the column chooser offers them all.
FIRST_COLUMNS = 8


class ResultsView:
    """Table, download and plots of one measurement DataFrame."""

    def __init__(self, on_pick: Callable[[str, str, int], Awaitable[None] | None] | None = None,
                 class_colors: Callable[[], Mapping[str, str]] = dict) -> None:
        """*class_colors* returns the ``#rrggbb`` colour of each class name, as the canvas draws it."""
        self.df = pd.DataFrame()
        self.on_pick = on_pick
        self.class_colors = class_colors
        with ui.row().classes("w-full gap-3 items-start") as self.box:  # plots go under the table when narrow
            with ui.column().classes("gap-1 min-w-0").style("flex: 3 1 24rem"):
                with ui.row().classes("items-center w-full no-wrap"):
                    self.summary = ui.label("No measurements yet.").classes("text-sm whitespace-nowrap")
                    ui.space()
                    self.columns = ui.select([], multiple=True, label="Columns", on_change=self.show_columns
                                             ).props("dense options-dense data-mcp=columns").classes("w-56")
                    self.download_button = ui.button("CSV", icon="download", on_click=self.download
                                                     ).props("dense flat no-caps").mark("download-csv")
                self.table = ui.table(columns=[], rows=[], pagination=10).props("dense flat").classes("w-full text-xs")
            with ui.column().classes("gap-1 min-w-0").style("flex: 2 1 20rem"):
                with ui.row().classes("items-center w-full no-wrap"):
                    self.x = ui.select([], label="X", on_change=self.plot).props("dense").classes("w-1/2")
                    self.y = ui.select([], label="Y (scatter)", on_change=self.plot).props("dense").classes("w-1/2")
                self.hist = ui.echart(self._empty()).classes("w-full h-48").props("data-mcp=histogram")
                self.scatter = ui.echart(self._empty()).classes("w-full h-56").props("data-mcp=scatter")
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
        self.table.rows = shown.round(4).replace({np.nan: None}).to_dict("records")
        self.table.row_key = "_row"
        numeric = self.numeric_columns()
        ids = [c for c in self.df.columns if c in ID_COLUMNS]
        self.columns.options = list(self.df.columns)
        self.columns.set_value(ids + numeric[:FIRST_COLUMNS])  # shows them
        self.columns.update()
        self.x.options, self.y.options = numeric, numeric
        self.x.value = next((c for c in numeric if c.startswith("area")), numeric[0] if numeric else None)
        self.y.value = next((c for c in numeric if "mean" in c), numeric[1] if len(numeric) > 1 else None)
        self.x.update()
        self.y.update()
        self.plot()

    def show_columns(self) -> None:
        """Show the chosen columns in the table, in the DataFrame's order."""
        chosen = set(self.columns.value or [])
        self.table.columns = [{"name": c, "label": c, "field": c, "sortable": True}
                              for c in self.df.columns if c in chosen]
        self.table.update()
        self.columns.props(f'display-value="{len(chosen)} of {len(self.df.columns)} columns"')

    def _color(self, name) -> dict:
        color = self.class_colors().get(str(name))
        return {"color": color} if color else {}

    def _point_name(self, row: pd.Series, x: str, y: str) -> str:
        """A scatter point's tooltip: image, frame, mask id and both values (4 significant digits)."""
        frame = f"frame {row['frame']}" if row.get("frame") else "single frame"
        return (f"{html.escape(str(row.get('image', '')))} · {html.escape(frame)} · "
                f"mask {int(row['mask_id'])}<br>{html.escape(x)}: {row[x]:.4g}<br>{html.escape(y)}: {row[y]:.4g}")

    def plot(self) -> None:
        df, x, y = self.df, self.x.value, self.y.value
        if df.empty or not x:
            return
        groups = df.groupby("class_name") if "class_name" in df else [("all", df)]
        edges = np.histogram_bin_edges(df[x].dropna(), bins=30)
        centres = [f"{c:.4g}" for c in (edges[:-1] + edges[1:]) / 2]
        self.hist.options.update({
            "legend": {"top": 0}, "tooltip": {}, "grid": {"left": 40, "right": 10, "top": 25, "bottom": 25},
            "xAxis": {"type": "category", "data": centres, "name": x},
            "yAxis": {"type": "value", "name": "count"},
            "series": [{"name": str(name), "type": "bar", "stack": "all", **self._color(name),
                        "data": np.histogram(g[x].dropna(), bins=edges)[0].tolist()} for name, g in groups],
        })
        self.hist.update()
        if not y:
            return
        self.scatter.options.update({
            "legend": {"top": 0}, "tooltip": {":formatter": "(p) => p.name"},  # the name is HTML, escaped here
            "grid": {"left": 45, "right": 10, "top": 25, "bottom": 30},
            "xAxis": {"type": "value", "name": x, "scale": True}, "yAxis": {"type": "value", "name": y, "scale": True},
            "series": [{"name": str(name), "type": "scatter", "symbolSize": 5, **self._color(name),
                        "data": [{"value": [float(row[x]), float(row[y]), int(i)], "name": self._point_name(row, x, y)}
                                 for i, row in g.iterrows()]}
                       for name, g in (df.groupby("class_name") if "class_name" in df else [("all", df)])],
        })
        self.scatter.update()

    async def _picked(self, e) -> None:
        if self.on_pick is None or not e.data:
            return
        row = self.df.loc[int(e.data["value"][2])]
        picked = self.on_pick(str(row.get("image", "")), str(row.get("frame", "") or ""), int(row["mask_id"]))
        if inspect.isawaitable(picked):
            await picked

    def download(self) -> None:
        if self.df.empty:
            ui.notify("Run a measurement first.", type="warning")
            return
        ui.download.content(self.df.to_csv(index=False).encode(), "measurements.csv", "text/csv")
