"""Object association across two label sets: children (e.g. nuclei, organelles) to parents (e.g. cells).

The measured labels are the parents; the second label set (``FrameData.second``, chosen with
``--second`` on the command line) holds the children. Each child belongs to the parent it
overlaps most (ties: the smaller parent id) when that overlap is at least ``min_overlap`` of
the child's area; otherwise it is an orphan (parent 0). Per parent the plugin reports the
number of children, their total area and their pixel-weighted mean intensity per channel;
the table ``children`` has one row per child with its parent. All overlaps come from one
``bincount`` of (parent, child) pixel pairs.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mcp_core.errors import ParameterError
from mcp_core.measure import FrameData, Overlay, Plugin, PluginOutput, grouped, hookimpl, regions


class AssociationParams(BaseModel):
    """Parameters of the child-to-parent association."""

    model_config = ConfigDict(extra="forbid")
    min_overlap: float = Field(0.5, gt=0, le=1, title="Minimum overlap",
                               description="Fraction of a child's area that must lie in its parent; a child below "
                                           "it in every parent is an orphan.")


COLUMNS = {
    "n_children": "Children associated with this object.",
    "children_area": "Total area of those children, in pixels (their whole area, inside the parent or not).",
    "children_mean_c{c}": "Mean intensity over all pixels of those children in channel c (nan without children).",
}
TABLES = {"children": {
    "child_id": "Mask id of the child in the second label set.",
    "parent_id": "Mask id of its parent (0 for an orphan).",
    "overlap_area": "Pixels of the child inside that parent (inside its best parent for an orphan).",
    "overlap_fraction": "overlap_area divided by the child's area.",
    "n_parents_overlapped": "Parents the child overlaps at all.",
    "child_area": "Pixels of the child.",
    "child_mean_c{c}": "Mean intensity of the child in channel c.",
}}
OVERLAYS = {
    "children": "Outline of each child (ids are child ids).",
    "child_links": "A line from each associated child's centre to its parent's centre (ids are child ids).",
}


def associate(parents: np.ndarray, children: np.ndarray, min_overlap: float) -> dict[str, np.ndarray]:
    """Best parent of every child present, with overlap area, fraction and the number of parents overlapped.

    Returns
    -------
    dict
        ``child_id`` (sorted), ``parent_id`` (0 = orphan), ``overlap_area``, ``overlap_fraction``,
        ``n_parents_overlapped`` and ``child_area``, one entry per child.
    """
    p = parents.ravel().astype(np.int64)
    c = children.ravel().astype(np.int64)
    m = int(c.max(initial=0)) + 1
    child_area = np.bincount(c, minlength=m)
    child_ids = np.flatnonzero(child_area[1:]) + 1
    both = (p > 0) & (c > 0)
    pair, overlap = np.unique(p[both] * m + c[both], return_counts=True)
    pair_parent, pair_child = np.divmod(pair, m)
    n_overlapped = np.bincount(pair_child, minlength=m)
    # per child, the largest overlap first, then the smaller parent id
    order = np.lexsort((pair_parent, -overlap, pair_child))
    best = order[np.r_[True, pair_child[order][1:] != pair_child[order][:-1]]] if len(order) else order
    best_parent = np.zeros(m, np.int64)
    best_overlap = np.zeros(m, np.int64)
    best_parent[pair_child[best]] = pair_parent[best]
    best_overlap[pair_child[best]] = overlap[best]
    fraction = best_overlap[child_ids] / child_area[child_ids]
    parent = np.where(fraction >= min_overlap, best_parent[child_ids], 0)
    return {"child_id": child_ids, "parent_id": parent, "overlap_area": best_overlap[child_ids],
            "overlap_fraction": fraction, "n_parents_overlapped": n_overlapped[child_ids],
            "child_area": child_area[child_ids]}


def compute(data: FrameData, params: AssociationParams) -> PluginOutput:
    """Children per parent (count, total area, mean intensities); the children table; outlines and links."""
    children = data.second
    if children is None:
        raise ParameterError("the association plugin needs a second label set (the children), e.g. "
                             "'measure --second pred' or second_source='pred'.")
    n = int(data.labels.max(initial=0)) + 1
    table = associate(data.labels, children, params.min_overlap)
    m = int(children.max(initial=0)) + 1
    parent_of = np.zeros(m, np.int64)
    parent_of[table["child_id"]] = table["parent_id"]
    g, flat = regions.foreground(children)
    owner = parent_of[g]  # parent of each child pixel (0 for orphans)
    kept = owner > 0
    ids = data.ids
    columns: dict[str, np.ndarray] = {
        "n_children": np.bincount(table["parent_id"][table["parent_id"] > 0], minlength=n)[ids],
        "children_area": grouped.counts(owner[kept], n)[ids],
    }
    for ch in range(data.n_channels):
        values = data.image[..., ch].ravel()[flat]
        columns[f"children_mean_c{ch}"] = grouped.means(owner[kept], values[kept], n)[ids]
        table[f"child_mean_c{ch}"] = grouped.means(g, values, m)[table["child_id"]]
    return PluginOutput(columns, tables={"children": table}, overlays=lambda: _overlays(data, table))


def _overlays(data: FrameData, table: dict[str, np.ndarray]) -> list[Overlay]:
    """Children outlines and child-to-parent lines between centroids (pixel centres)."""
    def centres(labels: np.ndarray) -> np.ndarray:
        n = int(labels.max(initial=0)) + 1
        g, flat = regions.foreground(labels)
        yy, xx = np.divmod(flat, labels.shape[1])
        area = np.maximum(grouped.counts(g, n), 1)
        return np.column_stack([grouped.sums(g, xx, n) / area + 0.5, grouped.sums(g, yy, n) / area + 0.5])

    linked = table["parent_id"] > 0
    child_xy, parent_xy = centres(data.second), centres(data.labels)
    lines = [np.stack([child_xy[c], parent_xy[p]])
             for c, p in zip(table["child_id"][linked], table["parent_id"][linked])]
    return [Overlay.outlines("children", data.second),
            Overlay.lines("child_links", lines, table["child_id"][linked])]


PLUGIN = Plugin(
    name="association",
    title="Object association (parents and children)",
    description="Associates the objects of a second label set (children, e.g. nuclei) with the measured objects "
                "(parents, e.g. cells) by largest overlap: child count, total area and mean intensity per parent, "
                "and a table of children with their parent.",
    params=AssociationParams,
    columns=COLUMNS,
    compute=compute,
    tables=TABLES,
    overlays=OVERLAYS,
    second_labels=True,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The association plugin."""
    return [PLUGIN]
