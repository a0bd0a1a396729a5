"""Object clusters: touching objects of the same class grouped into clusters.

Two objects touch when they share a boundary of at least ``min_interface`` pixel edges
(pixels of the two side by side horizontally or vertically); the interface length between
them is the number of such pixel pairs. Groups are the connected components of the "touches"
graph; a group of at least ``min_cluster_size`` objects is a cluster. All pairs come from two
shifted comparisons of the label image.

Besides the per-object columns, the plugin makes a table ``clusters`` with one row per
cluster (member ids, size, area, interface length, class mix) and an overlay of the
clusters' outlines.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mcp_core.measure import FrameData, Overlay, Plugin, PluginOutput, grouped, hookimpl


class ClusterParams(BaseModel):
    """Parameters of the cluster analysis."""

    model_config = ConfigDict(extra="forbid")
    same_class: bool = Field(True, title="Same class only",
                             description="Join only touching objects of the same class (off: any touching objects).")
    include_unassigned: bool = Field(True, title="Cluster unassigned objects",
                                     description="Let objects without a class (class 0) form clusters too.")
    min_interface: int = Field(5, ge=1, le=10000, title="Minimum interface",
                               description="Shared boundary, in pixel edges, needed for two objects to count as "
                                           "touching.")
    min_cluster_size: int = Field(2, ge=1, le=100000, title="Minimum cluster size",
                                  description="Objects a group of touching objects needs to count as a cluster.")


COLUMNS = {
    "cluster_id": "Cluster number in this frame (1, 2, ... by the smallest mask id in each cluster; 0 when the "
                  "object's group is smaller than the minimum cluster size).",
    "cluster_size": "Objects in this object's group of touching objects (1 when it touches none).",
    "cluster_area": "Pixels of all objects in the group.",
    "cluster_interface_length": "Total shared boundary between the group's objects, in pixel edges.",
    "n_touching": "Objects of the group this object touches.",
    "interface_length": "Boundary this object shares with those objects, in pixel edges.",
}
TABLES = {"clusters": {
    "cluster_id": "Cluster number in the frame (as in the per-object column).",
    "n_objects": "Objects in the cluster.",
    "member_ids": "Mask ids of the cluster's objects, separated by ';'.",
    "area": "Pixels of all objects in the cluster.",
    "interface_length": "Total shared boundary between the cluster's objects, in pixel edges.",
    "class_mix": "Objects per class, as 'class name:count' separated by ';' (classes in id order).",
}}
OVERLAYS = {"cluster_outlines": "Outline of each cluster (the union of its objects); ids are cluster numbers."}


def contacts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of touching labels ``(a < b)`` and the length of their shared boundary in pixel edges."""
    pairs = [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])]
    a = np.concatenate([p[0][(p[0] != p[1]) & (p[0] > 0) & (p[1] > 0)] for p in pairs]).astype(np.int64)
    b = np.concatenate([p[1][(p[0] != p[1]) & (p[0] > 0) & (p[1] > 0)] for p in pairs]).astype(np.int64)
    n = int(labels.max(initial=0)) + 1
    key, length = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_counts=True)
    return key // n, key % n, length


def cluster_labels(data: FrameData, params: ClusterParams) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Group number per mask id, cluster number per mask id, and the kept contacts ``(a, b, length)``.

    Groups (numbered 1, 2, ... by their smallest mask id; 0 for absent ids) are the connected
    components of the contact graph; clusters are the groups of at least ``min_cluster_size``
    objects, numbered the same way (0 for objects in smaller groups).
    """
    n = int(data.labels.max(initial=0)) + 1
    a, b, length = contacts(data.labels)
    keep = length >= params.min_interface
    if params.same_class:
        keep &= data.classes[a] == data.classes[b]
    if not params.include_unassigned:
        keep &= (data.classes[a] > 0) & (data.classes[b] > 0)
    a, b, length = a[keep], b[keep], length[keep]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    group = np.zeros(n, np.int64)
    cluster = np.zeros(n, np.int64)
    if data.ids.size:
        _, first, inverse, size = np.unique(component[data.ids], return_index=True, return_inverse=True,
                                            return_counts=True)
        order = np.argsort(first)  # components by their smallest mask id
        rank = np.empty(len(first), np.int64)
        rank[order] = np.arange(1, len(first) + 1)
        group[data.ids] = rank[inverse]
        big = size[order] >= params.min_cluster_size
        cluster_rank = np.zeros(len(first), np.int64)
        cluster_rank[order[big]] = np.arange(1, int(big.sum()) + 1)
        cluster[data.ids] = cluster_rank[inverse]
    return group, cluster, (a, b, length)


def compute(data: FrameData, params: ClusterParams) -> PluginOutput:
    """Cluster membership, size, area and interface lengths per object; the per-cluster table; outlines."""
    n = int(data.labels.max(initial=0)) + 1
    number, cluster, (a, b, length) = cluster_labels(data, params)
    m = int(number.max(initial=0)) + 1
    area = grouped.counts(data.labels.ravel().astype(np.int64), n)
    size = np.bincount(number[data.ids], minlength=m)
    cluster_area = np.bincount(number[data.ids], weights=area[data.ids], minlength=m)
    cluster_interface = np.bincount(number[a], weights=length, minlength=m)
    touching = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    interface = np.bincount(a, weights=length, minlength=n) + np.bincount(b, weights=length, minlength=n)
    k = number[data.ids]
    columns = {
        "cluster_id": cluster[data.ids], "cluster_size": size[k], "cluster_area": cluster_area[k].astype(np.int64),
        "cluster_interface_length": cluster_interface[k].astype(np.int64),
        "n_touching": touching[data.ids], "interface_length": interface[data.ids].astype(np.int64),
    }
    table = cluster_table(data, cluster, columns)
    return PluginOutput(columns, tables={"clusters": table},
                        overlays=lambda: [Overlay.outlines("cluster_outlines", cluster[data.labels])])


def cluster_table(data: FrameData, cluster: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per cluster: number, size, member ids, area, interface length and class mix."""
    ids = data.ids
    member = cluster[ids] > 0
    order = np.lexsort((ids[member], cluster[ids][member]))
    ids_in, numbers = ids[member][order], cluster[ids][member][order]
    numbers_u, starts = np.unique(numbers, return_index=True)
    firsts = np.flatnonzero(member)[order][starts]  # a row of each cluster in the per-object columns
    names = np.asarray(data.class_names, dtype=object)
    members, mixes = [], []
    for group in np.split(np.arange(len(ids_in)), starts[1:]) if len(ids_in) else []:
        members.append(";".join(str(i) for i in ids_in[group]))
        cls, count = np.unique(data.classes[ids_in[group]], return_counts=True)
        mixes.append(";".join(f"{names[c]}:{k}" for c, k in zip(cls, count)))
    return {"cluster_id": numbers_u, "n_objects": columns["cluster_size"][firsts],
            "member_ids": np.asarray(members, dtype=object), "area": columns["cluster_area"][firsts],
            "interface_length": columns["cluster_interface_length"][firsts],
            "class_mix": np.asarray(mixes, dtype=object)}


def review(data: FrameData, params: ClusterParams) -> np.ndarray:
    """The frame with each object painted by its cluster number (0 outside clusters)."""
    _, cluster, _ = cluster_labels(data, params)
    return cluster[data.labels]


PLUGIN = Plugin(
    name="clusters",
    title="Object clusters",
    description="Groups touching objects of the same class into clusters (a minimum shared border and size), "
                "with cluster size, area and interface lengths per object and a table of clusters with their "
                "members and class mix.",
    params=ClusterParams,
    columns=COLUMNS,
    compute=compute,
    review=review,
    tables=TABLES,
    overlays=OVERLAYS,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The cluster plugin."""
    return [PLUGIN]
