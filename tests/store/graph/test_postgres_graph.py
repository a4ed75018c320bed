"""The embedded graph shares runtime.knowledge_edges with the truth: it flags the truth's rows and never deletes
one; the structural rows it wrote for itself go when they leave the graph, so nothing stale looks like truth."""

from __future__ import annotations

import asyncpg

from core.vocabulary import EntityKind, NodeLabel, RelationshipType, StructuralRelationshipType
from store.graph.base import GraphBatch, GraphEdge, GraphNode, NodeRef
from store.graph.postgres import PostgresGraphStore
from store.repos import users
from tests.store import testrows

USER = "user-truth"
MU = NodeRef(label=NodeLabel.MEMORY_UNIT, key="mu-1")
CONCEPT = NodeRef(label=NodeLabel.CONCEPT, key="c-1")


async def edge_rows(pool: asyncpg.Pool) -> list[tuple[str, float, bool]]:
    rows = await pool.fetch(
        "SELECT relationship_type, strength, in_graph FROM runtime.knowledge_edges WHERE user_id = $1 "
        "ORDER BY relationship_type",
        USER,
    )
    return [(r["relationship_type"], r["strength"], r["in_graph"]) for r in rows]


async def test_the_graph_never_deletes_the_truth(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, USER, email="truth@example.org")
    truth = await testrows.upsert_edge(
        pool,
        USER,
        source_id=MU.key,
        source_type=EntityKind.MEMORY_UNIT,
        target_id=CONCEPT.key,
        target_type=EntityKind.CONCEPT,
        relationship_type=RelationshipType.IS_ABOUT,
        strength=0.5,
        description="ingestion wrote it",
        source_conversation_id="conv-1",
    )
    graph = PostgresGraphStore(pool)
    assert (await graph.counts(USER)).edges[RelationshipType.IS_ABOUT] == 0  # written, not yet applied

    as_applied = GraphEdge(
        source=MU,
        type=RelationshipType.IS_ABOUT,
        target=CONCEPT,
        strength=0.5,
        description="ingestion wrote it",
        source_conversation_id="conv-1",
    )
    mention = GraphEdge(source=MU, type=StructuralRelationshipType.MENTIONS, target=CONCEPT, strength=0.9)
    nodes = (GraphNode(label=NodeLabel.MEMORY_UNIT, key=MU.key), GraphNode(label=NodeLabel.CONCEPT, key=CONCEPT.key))
    await graph.apply(USER, GraphBatch(upsert_nodes=nodes, upsert_edges=(as_applied, mention)))
    assert await edge_rows(pool) == [("IS_ABOUT", 0.5, True), ("MENTIONS", 0.9, True)]
    (kept,) = [e for e in await testrows.list_edges(pool, USER) if e.relationship_type == "IS_ABOUT"]
    assert (kept.edge_id, kept.updated_at) == (truth.edge_id, truth.updated_at)  # same values: the row is as it was

    await graph.apply(USER, GraphBatch(delete_edges=(as_applied.key,)))
    assert await edge_rows(pool) == [("IS_ABOUT", 0.5, False), ("MENTIONS", 0.9, True)]
    await graph.apply(USER, GraphBatch(delete_nodes=(CONCEPT,)))
    assert await edge_rows(pool) == [("IS_ABOUT", 0.5, False)]
    await graph.apply(USER, GraphBatch(upsert_nodes=nodes, upsert_edges=(as_applied, mention)))
    await graph.apply(USER, GraphBatch(delete_edges=(mention.key,)))
    assert await edge_rows(pool) == [("IS_ABOUT", 0.5, True)]
    await graph.apply(USER, GraphBatch(upsert_edges=(mention,)))
    assert await graph.delete_user(USER) == 2
    assert await edge_rows(pool) == [("IS_ABOUT", 0.5, False)]
    assert await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = $1", USER) == 0


async def test_forgetting_the_user_in_postgres_empties_their_graph(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, USER, email="truth@example.org")
    graph = PostgresGraphStore(pool)
    await graph.apply(USER, GraphBatch(upsert_nodes=(GraphNode(label=NodeLabel.USER, key=USER),)))
    await pool.execute("DELETE FROM public.users WHERE user_id = $1", USER)
    assert sum((await graph.counts(USER)).nodes.values()) == 0
