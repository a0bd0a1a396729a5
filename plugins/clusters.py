"""Object clusters: touching objects of the same class grouped into clusters.

Two objects touch when they share a boundary: pixels of the two side by side horizontally
or vertically. The interface length between them is the number of such pixel pairs (pixel
edges). Clusters are the connected components of the "touches" graph; an object touching
nothing is a cluster of one. All pairs come from two shifted comparisons of the label image.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mcp_core.measure import FrameData, Plugin, grouped, hookimpl


class ClusterParams(BaseModel):
    """Parameters of the cluster analysis."""

    model_config = ConfigDict(extra="forbid")
    same_class: bool = Field(True, title="Same class only",
                             description="Join only touching objects of the same class (off: any touching objects).")
    include_unassigned: bool = Field(True, title="Cluster unassigned objects",
                                     description="Let objects without a class (class 0) form clusters too.")
    min_interface: int = Field(1, ge=1, le=10000, title="Minimum interface",
                               description="Shared boundary, in pixel edges, needed for two objects to count as "
                                           "touching.")


COLUMNS = {
    "cluster_id": "Cluster number in this frame (1, 2, ...; by the smallest mask id in each cluster).",
    "cluster_size": "Objects in the cluster.",
    "cluster_area": "Pixels of all objects in the cluster.",
    "cluster_interface_length": "Total shared boundary between the cluster's objects, in pixel edges.",
    "n_touching": "Objects of the cluster this object touches.",
    "interface_length": "Boundary this object shares with those objects, in pixel edges.",
}


def contacts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of touching labels ``(a < b)`` and the length of their shared boundary in pixel edges."""
    pairs = [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])]
    a = np.concatenate([p[0][(p[0] != p[1]) & (p[0] > 0) & (p[1] > 0)] for p in pairs]).astype(np.int64)
    b = np.concatenate([p[1][(p[0] != p[1]) & (p[0] > 0) & (p[1] > 0)] for p in pairs]).astype(np.int64)
    n = int(labels.max(initial=0)) + 1
    key, length = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_counts=True)
    return key // n, key % n, length


def cluster_labels(data: FrameData, params: ClusterParams) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Cluster number per mask id (0 for absent ids) and the kept contacts ``(a, b, length)``."""
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
    number = np.zeros(n, np.int64)
    if data.ids.size:
        _, first, inverse = np.unique(component[data.ids], return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first)] = np.arange(1, len(first) + 1)
        number[data.ids] = rank[inverse]
    return number, (a, b, length)


def compute(data: FrameData, params: ClusterParams) -> dict[str, np.ndarray]:
    """Cluster membership, size, area and interface lengths (rows in the order of ``data.ids``)."""
    n = int(data.labels.max(initial=0)) + 1
    number, (a, b, length) = cluster_labels(data, params)
    m = int(number.max(initial=0)) + 1
    area = grouped.counts(data.labels.ravel().astype(np.int64), n)
    size = np.bincount(number[data.ids], minlength=m)
    cluster_area = np.bincount(number[data.ids], weights=area[data.ids], minlength=m)
    cluster_interface = np.bincount(number[a], weights=length, minlength=m)
    touching = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    interface = np.bincount(a, weights=length, minlength=n) + np.bincount(b, weights=length, minlength=n)
    k = number[data.ids]
    return {
        "cluster_id": k, "cluster_size": size[k], "cluster_area": cluster_area[k].astype(np.int64),
        "cluster_interface_length": cluster_interface[k].astype(np.int64),
        "n_touching": touching[data.ids], "interface_length": interface[data.ids].astype(np.int64),
    }


def review(data: FrameData, params: ClusterParams) -> np.ndarray:
    """The frame with each object painted by its cluster number."""
    number, _ = cluster_labels(data, params)
    return number[data.labels]


PLUGIN = Plugin(
    name="clusters",
    title="Object clusters",
    description="Groups touching objects of the same class into clusters, with cluster size, area and the "
                "length of the interfaces between objects.",
    params=ClusterParams,
    columns=COLUMNS,
    compute=compute,
    review=review,
)


@hookimpl
def mcp_measure_plugins() -> list[Plugin]:
    """The cluster plugin."""
    return [PLUGIN]
