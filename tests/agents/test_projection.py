"""The 3D layout (agents/projection.py): deterministic, independent of input order, aligned to the previous layout
so that unchanged nodes stay put, communities at their members' centroid, edges only between placed nodes."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from agents.projection import Node, layout, previous_coordinates, projection_data


def nodes(count: int, dimension: int = 16, seed: int = 1) -> list[Node]:
    """Random vectors whose variance falls off with the dimension, as real embeddings' spectra do (isotropic noise
    is PCA's worst case: with no leading directions any new point may swap the components)."""
    rng = random.Random(seed)
    return [
        Node(
            id=f"n{i:03d}",
            type="MemoryUnit",
            label=f"node {i}",
            vector=[rng.gauss(0, 1) / (d + 1) for d in range(dimension)],
        )
        for i in range(count)
    ]


def test_the_same_input_in_any_order_gives_the_same_coordinates() -> None:
    some = nodes(30)
    shuffled = some[:]
    random.Random(5).shuffle(shuffled)
    assert layout(some).coordinates == layout(shuffled).coordinates == layout(nodes(30)).coordinates


def test_alignment_undoes_a_rotation_and_mirroring_of_the_previous_layout() -> None:
    some = nodes(20)
    first = layout(some).coordinates
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))  # a random orthogonal map, maybe a mirror
    turned: dict[str, tuple[float, float, float]] = {}
    for key, point in first.items():
        x, y, z = (float(v) for v in np.array(point) @ q + [1.0, -2.0, 0.5])
        turned[key] = (x, y, z)
    again = layout(some, turned)
    assert again.aligned == 20
    for key, point in turned.items():
        assert again.coordinates[key] == pytest.approx(point, abs=1e-3)


def test_unchanged_nodes_stay_close_when_one_node_is_added() -> None:
    some = nodes(40)
    first = layout(some).coordinates
    newcomer = Node(id="new", type="Concept", label="new", vector=nodes(1, seed=99)[0].vector)
    grown = layout([*some, newcomer], first)
    moved = [np.linalg.norm(np.subtract(grown.coordinates[key], point)) for key, point in first.items()]
    spread = np.mean([np.linalg.norm(point) for point in first.values()])
    assert grown.aligned == 40
    assert float(np.mean(moved)) < 0.03 * spread and max(moved) < 0.1 * spread


def test_few_nodes_are_placed_without_failing() -> None:
    assert layout([]).coordinates == {}
    assert layout(nodes(1)).coordinates == {"n000": (0.0, 0.0, 0.0)}
    assert len(layout(nodes(2)).coordinates) == 2


def test_nodes_with_one_and_the_same_vector_give_a_projection_json_can_store() -> None:
    """Identical vectors (a user whose every node embeds alike) have no variance to explain: PCA's ratios would be
    NaN, which Postgres' json refuses, and the projection job would fail for ever."""
    same = [Node(id=f"n{i}", type="Concept", label="x", vector=[0.1, 0.2, 0.3], size=float("nan")) for i in range(5)]
    data = projection_data(same, [], [], previous={f"n{i}": (0.0, 0.0, 0.0) for i in range(5)})
    json.dumps(data, allow_nan=False)
    assert data["explained_variance"] == [] and {n["size"] for n in data["nodes"]} == {None}


def test_projection_data_places_communities_at_their_members_centroid_and_keeps_edges_between_placed_nodes() -> None:
    some = nodes(6)
    communities = [
        {"community_id": "c1", "name": "Running", "members": ["n000", "n001"]},
        {"community_id": "c2", "name": "Nobody placed", "members": ["missing"]},
    ]
    edges: list[dict[str, Any]] = [
        {"source": "n000", "target": "n001", "type": "RELATED_TO", "strength": 0.5},
        {"source": "n000", "target": "c1", "type": "BELONGS_TO_COMMUNITY", "strength": None},
        {"source": "n000", "target": "gone", "type": "RELATED_TO", "strength": 0.5},
    ]
    data = projection_data(some, communities, edges)
    by_id = {node["id"]: node for node in data["nodes"]}
    assert set(by_id) == {*(n.id for n in some), "c1"}
    a, b = by_id["n000"], by_id["n001"]
    assert by_id["c1"]["x"] == pytest.approx((a["x"] + b["x"]) / 2, abs=1e-4)
    assert [(e["source"], e["target"]) for e in data["edges"]] == [("n000", "n001"), ("n000", "c1")]
    assert previous_coordinates(data) == {n.id: (by_id[n.id]["x"], by_id[n.id]["y"], by_id[n.id]["z"]) for n in some}
