"""The projection's input digest (store/projection_source.py), pure."""

from __future__ import annotations

from store.projection_source import ProjectionEdge, ProjectionSource


def test_the_digest_orders_edges_with_and_without_a_strength() -> None:
    """A structural edge (no strength) next to an extracted one between the same nodes and of the same type made
    sorting compare None with a float: the demo's first projection died on every try."""
    edges = [ProjectionEdge("a", "b", "DERIVED_FROM"), ProjectionEdge("a", "b", "DERIVED_FROM", 0.5)]
    assert ProjectionSource(edges=edges).digest({}) == ProjectionSource(edges=edges[::-1]).digest({})
