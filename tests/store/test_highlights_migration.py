"""Migration 0023 on a database an earlier Orrery wrote (at 0022): the extracted HIGHLIGHTS rows become IS_ABOUT,
the knowledge graph schema's patterns follow, and the outbox rows it records make the graph converge, with no
`reconcile --repair`: IS_ABOUT from the memory unit, HIGHLIGHTS from each artifact, no drift."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from cli.session import dispatch
from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from store.graph.base import GraphBatch, GraphEdge, NodeRef
from store.graph.postgres import PostgresGraphStore
from store.migrate import MIGRATIONS_DIR, migrate
from store.postgres import connect, create_pool
from store.reconcile import graph_drift
from store.repos import users
from store.sync import graph_batch, user_refs
from tests.store import testrows
from tests.store.derived_memory import open_stores, store_settings

HIGHLIGHTS = StructuralRelationshipType.HIGHLIGHTS


@pytest.fixture
async def old_pool(empty_database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A database migrated up to 0022, as the Orrery before 0023 left it."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0023":
            shutil.copy(path, older / path.name)
    conn = await connect(empty_database_url)
    try:
        await migrate(conn, older)
    finally:
        await conn.close()
    pool = await create_pool(empty_database_url, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


async def test_0023_renames_the_extracted_rows_and_the_graph_converges_through_the_outbox(
    old_pool: asyncpg.Pool, empty_database_url: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    pool = old_pool
    uid = (await users.create_user(pool, str(uuid.uuid4()), email="old@example.org")).user_id
    other = (await users.create_user(pool, str(uuid.uuid4()), email="other@example.org")).user_id
    unit = await testrows.insert_memory_unit(
        pool,
        uid,
        title="First 10k",
        content="Ran ten kilometres.",
        creation_ts=datetime(2026, 3, 1, tzinfo=UTC),
        importance_score=7,
        sentiment_score=0.5,
        source_conversation_id=None,
    )
    running = await testrows.create_concept(pool, uid, name="Running", type="activity", normalized_name="running")
    artifact = await testrows.create_derived_artifact(
        pool,
        uid,
        artifact_type="insight_summary",
        title="Consistency",
        content_data={"source_memory_unit_ids": [unit.muid], "source_concept_ids": [running.concept_id]},
        source_memory_unit_id=unit.muid,
    )
    theirs = await testrows.create_derived_artifact(pool, other, artifact_type="cycle_report", title="Empty cycle")
    old = await testrows.upsert_edge(
        pool,
        uid,
        source_id=unit.muid,
        source_type="MemoryUnit",
        target_id=running.concept_id,
        target_type="Concept",
        relationship_type="HIGHLIGHTS",
        strength=0.9,
        description="the run",
        source_conversation_id=None,
    )
    schema = {
        "concept_types": [{"type": "activity", "description": "what she does"}],
        "relationship_patterns": [
            {
                "source_type": "MemoryUnit",
                "relationship_type": "HIGHLIGHTS",
                "target_type": "activity",
                "description": "d",
            },
            {"source_type": "activity", "relationship_type": "RELATED_TO", "target_type": "person", "description": "e"},
        ],
    }
    await pool.execute("UPDATE users SET knowledge_graph_schema = $2 WHERE user_id = $1", uid, schema)

    # the graph as the earlier Orrery kept it: every node, the extracted HIGHLIGHTS in the graph with the MENTIONS it
    # implies, no relationship from the artifact but DERIVED_FROM
    graph = PostgresGraphStore(pool)
    now = await graph_batch(pool, graph, uid, await user_refs(pool, uid))
    mention = GraphEdge(
        source=NodeRef(label=NodeLabel.MEMORY_UNIT, key=unit.muid),
        type=StructuralRelationshipType.MENTIONS,
        target=NodeRef(label=NodeLabel.CONCEPT, key=running.concept_id),
    )
    edges = (*(e for e in now.upsert_edges if e.type is not HIGHLIGHTS), mention)
    await graph.apply(uid, GraphBatch(upsert_nodes=now.upsert_nodes, upsert_edges=edges))
    await pool.execute("UPDATE runtime.knowledge_edges SET in_graph = true WHERE edge_id = $1", old.edge_id)
    assert (await graph.counts(uid)).edges[HIGHLIGHTS] == 1  # the extracted row, under its old name

    shutil.copy(MIGRATIONS_DIR / "0023_highlights_from_rows.sql", tmp_path / "migrations")  # 0023 alone
    async with pool.acquire() as conn:
        assert (await migrate(conn, tmp_path / "migrations")).applied == ["0023_highlights_from_rows.sql"]

    row = await pool.fetchrow("SELECT * FROM runtime.knowledge_edges WHERE edge_id = $1", old.edge_id)
    assert (row["relationship_type"], row["strength"], row["description"], row["in_graph"]) == (
        "IS_ABOUT",
        0.9,
        "the run",
        True,
    )
    stored = await pool.fetchval("SELECT knowledge_graph_schema FROM users WHERE user_id = $1", uid)
    assert [p["relationship_type"] for p in stored["relationship_patterns"]] == ["IS_ABOUT", "RELATED_TO"]
    assert stored["concept_types"] == schema["concept_types"]
    queued = await pool.fetch("SELECT store, user_id, label, entity_id FROM runtime.outbox ORDER BY label, entity_id")
    assert {tuple(r) for r in queued} == {
        ("graph", uid, "DerivedArtifact", artifact.artifact_id),
        ("graph", other, "DerivedArtifact", theirs.artifact_id),
        ("graph", uid, "MemoryUnit", unit.muid),
    }

    settings = store_settings(empty_database_url, redis_url, tmp_path)
    async with open_stores(settings, pool, redis_client) as session:
        applied = await dispatch(session, "graph")
        assert applied.rows == 3 and not applied.failed
        after = await graph_drift(pool, await session.graph(), uid)
    assert after.total == after.pending == 0
    from_unit = (await graph.neighbourhood(uid, mention.source, 1)).edges
    assert (RelationshipType.IS_ABOUT, running.concept_id) in {(e.type, e.target.key) for e in from_unit}
    from_artifact = (
        await graph.neighbourhood(uid, NodeRef(label=NodeLabel.DERIVED_ARTIFACT, key=artifact.artifact_id), 1)
    ).edges
    assert {(e.type, e.target.key) for e in from_artifact if e.type is HIGHLIGHTS} == {
        (HIGHLIGHTS, unit.muid),
        (HIGHLIGHTS, running.concept_id),
    }
    counts = (await graph.counts(uid)).edges
    assert (counts[RelationshipType.IS_ABOUT], counts[HIGHLIGHTS], counts[StructuralRelationshipType.MENTIONS]) == (
        1,
        2,
        1,
    )
