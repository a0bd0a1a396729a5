"""Object tracking over a time series: optimal frame-to-frame matching with gap closing.

At each frame the tracks seen within the last ``max_gap + 1`` frames are matched to the
frame's objects by one optimal linear assignment (the problem the Hungarian method solves;
here scipy's sparse Jonker-Volgenant solver ``min_weight_full_bipartite_matching``, so
thousands of objects need no dense matrix) on a cost matrix augmented with "track ends" and
"new track" options, so leaving a track or an object unmatched is always possible. Only
pairs within reach enter the matrix (a k-d tree finds them).

A link from a track last seen ``g + 1`` frames ago (``g`` missed frames) to an object is
allowed when the centroids are at most ``max_distance·(g + 1)`` apart (and, with
``same_class``, the classes agree); it costs::

    w_distance·d / (max_distance·(g + 1)) + w_area·|ΔA| / max(A) + w_intensity·|ΔI| / max(I) + gap_penalty·g

Ending a track or starting one costs the largest possible link cost, so every allowed link
is taken when it does not displace a cheaper set of links.

Each observation gets a status: ``new`` (its track starts here), ``continued`` (linked from
the previous frame), ``gap-closed`` (linked across missed frames) or ``ended`` (the track's last
observation, before the end of the series; this wins over the others), and the cost of the
link that reached it. A table ``tracks`` has one row per track, and the overlay ``trails``
draws each track's recent path on every frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from mcp_core.errors import ParameterError
from mcp_core.measure import FrameData, Overlay, Plugin, PluginOutput, grouped, hookimpl, regions


class TrackParams(BaseModel):
    """Parameters of the tracker."""

    model_config = ConfigDict(extra="forbid")
    max_distance: float = Field(20.0, gt=0, le=10000, title="Maximum distance",
                                description="Largest centroid displacement between consecutive frames, in pixels.")
    max_gap: int = Field(2, ge=0, le=100, title="Maximum gap",
                         description="Frames an object may be missing and still continue its track.")
    weight_distance: float = Field(1.0, ge=0, le=100, title="Distance weight",
                                   description="Weight of the displacement in the link cost.")
    weight_area: float = Field(1.0, ge=0, le=100, title="Area weight",
                               description="Weight of the relative change in area in the link cost.")
    weight_intensity: float = Field(0.5, ge=0, le=100, title="Intensity weight",
                                    description="Weight of the relative change in mean intensity in the link cost.")
    gap_penalty: float = Field(0.5, ge=0, le=100, title="Gap penalty",
                               description="Extra cost per missed frame, so continuous links are preferred.")
    channel: int = Field(0, ge=0, le=63, title="Intensity channel",
                         description="Channel whose mean intensity enters the link cost.")
    same_class: bool = Field(True, title="Same class only",
                             description="Link only objects of the same class.")
    trail_frames: int = Field(10, ge=1, le=10000, title="Trail length",
                              description="Frames of past positions the trail overlay draws behind each object.")


COLUMNS = {
    "track_id": "Track number (1, 2, ... per time series).",
    "track_t": "Position of the frame in the time series (0, 1, ...).",
    "track_x": "Centroid column used for linking.",
    "track_y": "Centroid row used for linking.",
    "track_step": "Distance from the track's previous position, in pixels (nan at the track's start).",
    "track_gap": "Frames missed just before this observation (0 when seen in the previous frame).",
    "track_length": "Number of frames in which the track is seen.",
    "track_status": "'new' (the track starts here), 'continued', 'gap-closed' (linked across missed frames) or "
                    "'ended' (the track's last observation before the end of the series).",
    "track_cost": "Cost of the assignment that linked this observation to its track (nan when the track starts).",
}
TABLES = {"tracks": {
    "track_id": "Track number.",
    "start_t": "First time point of the track.",
    "end_t": "Last time point of the track.",
    "n_frames": "Frames in which the track is seen.",
    "n_gap_closings": "Links across missed frames.",
    "path_length": "Sum of the track's steps, in pixels.",
    "mean_cost": "Mean assignment cost of the track's links (nan for a track seen once).",
    "ended": "Whether the track stops before the last frame of the series.",
}}
OVERLAYS = {"trails": "Each track's path over the last frames up to this one (ids are track numbers)."}


def _features(data: FrameData, channel: int) -> dict[str, np.ndarray]:
    n = int(data.labels.max(initial=0)) + 1
    g, flat = regions.foreground(data.labels)
    yy, xx = np.divmod(flat, data.labels.shape[1])
    area = grouped.counts(g, n)
    safe = np.maximum(area, 1)
    ids = data.ids
    return {"y": (grouped.sums(g, yy, n) / safe)[ids], "x": (grouped.sums(g, xx, n) / safe)[ids],
            "area": area[ids].astype(float),
            "intensity": (grouped.sums(g, data.image[..., channel].ravel()[flat], n) / safe)[ids],
            "cls": data.classes[ids]}


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, np.abs(a - b) / np.where(top > 0, top, 1), 0.0)


def link_costs(ends: dict[str, np.ndarray], objs: dict[str, np.ndarray], gaps: np.ndarray,
               p: TrackParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allowed links ``(track end, object, cost)``; only pairs within reach are ever formed (k-d tree)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(gaps) == 0 or len(objs["x"]) == 0:
        return empty
    reach_max = p.max_distance * (int(gaps.max()) + 1)
    pairs = cKDTree(np.column_stack([ends["y"], ends["x"]])).sparse_distance_matrix(
        cKDTree(np.column_stack([objs["y"], objs["x"]])), reach_max, output_type="ndarray")
    r, c, d = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"]
    reach = p.max_distance * (gaps[r] + 1)
    cost = (p.weight_distance * d / reach
            + p.weight_area * _relative(ends["area"][r], objs["area"][c])
            + p.weight_intensity * _relative(ends["intensity"][r], objs["intensity"][c])
            + p.gap_penalty * gaps[r])
    ok = d <= reach
    if p.same_class:
        ok &= ends["cls"][r] == objs["cls"][c]
    return r[ok], c[ok], cost[ok]


def assign(n_rows: int, n_cols: int, links: tuple[np.ndarray, np.ndarray, np.ndarray],
           no_link: float) -> list[tuple[int, int]]:
    """Optimal links ``(row, column)`` among the allowed ones, where leaving a row or column unmatched costs *no_link*.

    The augmented matrix (links | row ends; column starts | transposed links) is sparse and
    always has a full matching; every entry is offset by 1 (which changes every full
    matching's total by the same amount) so zero-cost links stay explicit edges.
    """
    if n_rows == 0 or n_cols == 0:
        return []
    r, c, cost = links
    rows_d, cols_d = np.arange(n_rows), np.arange(n_cols)
    i = np.concatenate([r, rows_d, n_rows + cols_d, n_rows + c])
    j = np.concatenate([c, n_cols + rows_d, cols_d, n_cols + r])
    w = 1.0 + np.concatenate([cost, np.full(n_rows + n_cols, no_link), np.zeros(len(r))])
    size = n_rows + n_cols
    matrix = coo_matrix((w, (i, j)), shape=(size, size)).tocsr()
    rows, cols = min_weight_full_bipartite_matching(matrix)
    return [(int(a), int(b)) for a, b in zip(rows, cols) if a < n_rows and b < n_cols]


def compute(frames: Sequence[FrameData], params: TrackParams) -> PluginOutput:
    """Track ids, status and link cost for every object of every frame of one time series; tracks table; trails."""
    if frames and params.channel >= frames[0].n_channels:
        raise ParameterError(f"channel {params.channel} does not exist: the image has {frames[0].n_channels} channel(s).")
    no_link = (params.weight_distance + params.weight_area + params.weight_intensity
               + params.gap_penalty * params.max_gap)
    no_link = max(no_link, 1e-9)
    keys = ("y", "x", "area", "intensity", "cls")
    ends: dict[str, np.ndarray] = {k: np.zeros(0) for k in keys}
    end_t = np.zeros(0, np.int64)
    end_id = np.zeros(0, np.int64)
    rows: dict[str, list] = {k: [] for k in ("t", "mask_id", "track_id", "track_x", "track_y", "track_step",
                                             "track_gap", "track_cost")}
    next_id = 1
    for t, data in enumerate(frames):
        objs = _features(data, params.channel)
        n_obj = len(data.ids)
        active = np.flatnonzero(t - end_t - 1 <= params.max_gap)
        gaps = t - end_t[active] - 1
        sub = {k: v[active] for k, v in ends.items()}
        allowed = link_costs(sub, objs, gaps, params)
        links = assign(len(active), n_obj, allowed, no_link)
        cost_of = {(int(r), int(c)): float(w) for r, c, w in zip(*allowed)}
        track = np.zeros(n_obj, np.int64)
        step = np.full(n_obj, np.nan)
        cost = np.full(n_obj, np.nan)
        gap = np.zeros(n_obj, np.int64)
        slot = np.full(n_obj, -1)
        for r, c in links:
            e = active[r]
            track[c], slot[c], gap[c], cost[c] = end_id[e], e, gaps[r], cost_of[(r, c)]
            step[c] = np.hypot(objs["y"][c] - ends["y"][e], objs["x"][c] - ends["x"][e])
        new = np.flatnonzero(slot < 0)
        track[new] = np.arange(next_id, next_id + len(new))
        next_id += len(new)
        linked = slot >= 0
        for k in keys:
            ends[k][slot[linked]] = objs[k][linked]
            ends[k] = np.concatenate([ends[k], objs[k][new]])
        end_t[slot[linked]] = t
        end_t = np.concatenate([end_t, np.full(len(new), t)])
        end_id = np.concatenate([end_id, track[new]])
        rows["t"].append(np.full(n_obj, t))
        rows["mask_id"].append(data.ids)
        rows["track_id"].append(track)
        rows["track_x"].append(objs["x"])
        rows["track_y"].append(objs["y"])
        rows["track_step"].append(step)
        rows["track_gap"].append(gap)
        rows["track_cost"].append(cost)
    out = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in rows.items()}
    out["t"] = out["t"].astype(np.int64)
    out["track_id"] = out["track_id"].astype(np.int64)
    out["track_t"] = out["t"]
    ids, counts = np.unique(out["track_id"], return_counts=True)
    out["track_length"] = counts[np.searchsorted(ids, out["track_id"])] if len(ids) else np.zeros(0, np.int64)
    out["track_status"] = statuses(out, len(frames))
    return PluginOutput(out, tables={"tracks": track_table(out, len(frames))},
                        overlays=lambda: trails(out, len(frames), params.trail_frames))


def statuses(rows: dict[str, np.ndarray], n_frames: int) -> np.ndarray:
    """Status of each observation: new, continued, gap-closed, or ended (last seen before the series ends)."""
    linked = np.isfinite(rows["track_cost"])
    status = np.where(~linked, "new", np.where(rows["track_gap"] > 0, "gap-closed", "continued")).astype(object)
    last = np.zeros(int(rows["track_id"].max(initial=0)) + 1, np.int64)
    np.maximum.at(last, rows["track_id"], rows["t"])
    status[(rows["t"] == last[rows["track_id"]]) & (rows["t"] < n_frames - 1)] = "ended"
    return status


def track_table(rows: dict[str, np.ndarray], n_frames: int) -> dict[str, np.ndarray]:
    """One row per track: first and last time point, frames seen, gap closings, path length, mean cost, ended."""
    table = pd.DataFrame({"track_id": rows["track_id"], "t": rows["t"], "step": rows["track_step"],
                          "cost": rows["track_cost"], "closed": rows["track_gap"] > 0})
    per = table.groupby("track_id", sort=True).agg(start_t=("t", "min"), end_t=("t", "max"), n_frames=("t", "size"),
                                                   n_gap_closings=("closed", "sum"),
                                                   path_length=("step", lambda v: float(np.nansum(v))),
                                                   mean_cost=("cost", "mean")).reset_index()
    per["ended"] = per["end_t"] < n_frames - 1
    return {c: per[c].to_numpy() for c in TABLES["tracks"]}


def trails(rows: dict[str, np.ndarray], n_frames: int, length: int) -> dict[int, list[Overlay]]:
    """Per frame, one polyline per track seen there: its positions over the last *length* frames up to it."""
    order = np.lexsort((rows["t"], rows["track_id"]))
    track, t = rows["track_id"][order], rows["t"][order]
    xy = np.column_stack([rows["track_x"][order] + 0.5, rows["track_y"][order] + 0.5])  # pixel centres
    key = track * (n_frames + 1) + t  # sorted: the observations of each track in time order
    first = np.searchsorted(key, track * (n_frames + 1) + np.maximum(t - length + 1, 0))
    out: dict[int, list[Overlay]] = {}
    for now in range(n_frames):
        here = np.flatnonzero(t == now)
        out[now] = [Overlay.lines("trails", [xy[first[i]:i + 1] for i in here], track[here])]
    return out


PLUGIN = Plugin(
    name="tracking",
    title="Object tracking",
    description="Links objects through the frames of a time series with optimal (Hungarian) matching on distance, "
                "area and intensity, closing gaps of missed frames; gives every object a track id.",
    params=TrackParams,
    columns=COLUMNS,
    compute=compute,
    scope="series",
    tables=TABLES,
    overlays=OVERLAYS,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The tracking plugin."""
    return [PLUGIN]
