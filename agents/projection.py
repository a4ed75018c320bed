"""The 3D cosmos: the user's nodes placed in three dimensions from their embeddings, stable between runs. Pure.

PCA (scikit-learn, full SVD: deterministic, no randomness to seed beyond `random_state`) reduces the vectors, taken
in a stable order (sorted by node), to three components. A new basis would still rotate or mirror the whole picture
whenever a few nodes are added, so the new coordinates are aligned to the previous projection by orthogonal
Procrustes with translation (scipy) over the nodes both share: nodes that did not change stay where they were, up to
how much the new material reshapes the space. Communities sit at the centroid of their member concepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

METHOD = "pca"
SEED = 7
DIGITS = 4
MIN_SHARED = 4
"""Nodes shared with the previous projection needed to align to it (fewer cannot fix a rotation in 3D)."""

Point = tuple[float, float, float]


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    label: str
    vector: Sequence[float]
    size: float | None = None


@dataclass(frozen=True)
class Layout:
    coordinates: dict[str, Point]
    explained_variance: list[float]
    aligned: int
    """How many nodes the layout was aligned on (0: not aligned)."""


def pca_3d(vectors: NDArray[np.float64]) -> tuple[NDArray[np.float64], list[float]]:
    """Rows reduced to 3 columns (zero-padded when there are fewer samples or dimensions than 3)."""
    from sklearn.decomposition import PCA

    count, dimension = vectors.shape
    components = min(3, count, dimension)
    if count < 2 or not np.ptp(vectors, axis=0).any():
        return np.zeros((count, 3)), []  # one point, or all the same: no direction to find (the ratios would be NaN)
    pca = PCA(n_components=components, svd_solver="full", random_state=SEED)
    reduced = pca.fit_transform(vectors)
    padded = np.zeros((count, 3))
    padded[:, :components] = reduced
    return padded, [round(float(v), DIGITS) for v in pca.explained_variance_ratio_]


def align(
    coordinates: NDArray[np.float64], ids: Sequence[str], previous: Mapping[str, Point]
) -> tuple[NDArray[np.float64], int]:
    """`coordinates` rotated/mirrored and moved to best match `previous` on the shared nodes (orthogonal Procrustes,
    no scaling); unchanged when fewer than MIN_SHARED nodes are shared."""
    from scipy.linalg import orthogonal_procrustes

    shared = [i for i, node in enumerate(ids) if node in previous]
    if len(shared) < MIN_SHARED:
        return coordinates, 0
    new = coordinates[shared]
    old = np.array([previous[ids[i]] for i in shared], dtype=np.float64)
    new_center, old_center = new.mean(axis=0), old.mean(axis=0)
    rotation, _ = orthogonal_procrustes(new - new_center, old - old_center)
    return (coordinates - new_center) @ rotation + old_center, len(shared)


def layout(nodes: Sequence[Node], previous: Mapping[str, Point] | None = None) -> Layout:
    """Coordinates for `nodes` (taken sorted by id, so the input order does not matter)."""
    ordered = sorted(nodes, key=lambda node: node.id)
    if not ordered:
        return Layout({}, [], 0)
    vectors = np.array([node.vector for node in ordered], dtype=np.float64)
    reduced, explained = pca_3d(vectors)
    ids = [node.id for node in ordered]
    aligned = 0
    if previous:
        reduced, aligned = align(reduced, ids, previous)
    coordinates = {
        node_id: (round(float(x), DIGITS) + 0.0, round(float(y), DIGITS) + 0.0, round(float(z), DIGITS) + 0.0)
        for node_id, (x, y, z) in zip(ids, reduced, strict=True)
    }
    return Layout(coordinates, explained, aligned)


def centroid(points: Sequence[Point]) -> Point:
    count = len(points)
    x, y, z = (round(sum(p[axis] for p in points) / count, DIGITS) + 0.0 for axis in range(3))
    return (x, y, z)


def previous_coordinates(data: Mapping[str, Any] | None) -> dict[str, Point]:
    """The embedded nodes' coordinates of a stored projection_data (communities excluded: they are centroids)."""
    found: dict[str, Point] = {}
    nodes = data.get("nodes") if data else None
    for node in nodes if isinstance(nodes, list) else []:
        try:
            if node["type"] != "Community":
                found[str(node["id"])] = (float(node["x"]), float(node["y"]), float(node["z"]))
        except (KeyError, TypeError, ValueError):
            continue  # a node the web app or an older version wrote differently: not used for alignment
    return found


def projection_data(
    nodes: Sequence[Node],
    communities: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Point] | None = None,
) -> dict[str, Any]:
    """What `user_graph_projections.projection_data` holds: nodes with x, y, z, the edges among them, and how the
    layout was made. `communities` are {community_id, name, members}; a community with no placed member is left out,
    and so is an edge whose ends are not both placed."""
    placed = layout(nodes, previous)
    out_nodes: list[dict[str, Any]] = []
    for node in sorted(nodes, key=lambda n: n.id):
        x, y, z = placed.coordinates[node.id]
        size = node.size if node.size is None or np.isfinite(node.size) else None  # JSON has no NaN
        out_nodes.append({"id": node.id, "type": node.type, "label": node.label, "x": x, "y": y, "z": z, "size": size})
    for community in sorted(communities, key=lambda c: str(c["community_id"])):
        points = [placed.coordinates[m] for m in community["members"] if m in placed.coordinates]
        if points:
            x, y, z = centroid(points)
            out_nodes.append(
                {
                    "id": community["community_id"],
                    "type": "Community",
                    "label": community["name"],
                    "x": x,
                    "y": y,
                    "z": z,
                    "size": float(len(points)),
                }
            )
    present = {node["id"] for node in out_nodes}
    out_edges = [dict(edge) for edge in edges if edge["source"] in present and edge["target"] in present]
    return {
        "version": 1,
        "method": METHOD,
        "explained_variance": placed.explained_variance,
        "aligned_nodes": placed.aligned,
        "nodes": out_nodes,
        "edges": out_edges,
    }
