"""Reconciliation: the pure comparison, then drift of each kind injected into each real store (the embedded graph,
pgvector with the local embedding model) found per type, and repaired through the outbox until none is left."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from cli.session import Session, configured_space
from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from settings import Settings
from store import outbox
from store.drift import Drift, diff
from store.reconcile import (
    GRAPH,
    VECTOR,
    Orphans,
    StoreDrift,
    graph_drift,
    record_refs,
    stale_vector_refs,
    vector_drift,
)
from store.sync import Ref
from tests.store.derived_memory import Memory, drain, open_stores, remember, store_settings

# --- the pure comparison -----------------------------------------------------------------------------------------


def test_diff_sorts_ids_into_missing_extra_and_changed() -> None:
    expected = {"a": "1", "b": "2", "c": "3"}
    held = {"b": "2", "c": "x", "d": "4"}
    assert diff(expected, held) == Drift(missing=("a",), extra=("d",), changed=("c",))
    assert len(diff(expected, held)) == 3 and diff(expected, held).ids() == ("a", "d", "c")


def test_no_drift_when_both_sides_agree_including_placeholders_and_tuples() -> None:
    assert not diff({"n": None, "m": "h"}, {"n": None, "m": "h"})
    assert diff({"n": None}, {"n": "h"}) == Drift(changed=("n",))  # a placeholder where a full node is held
    assert diff({"k": ("h", "model-a")}, {"k": ("h", "model-b")}) == Drift(changed=("k",))  # another model


def test_ids_come_out_in_the_given_order_and_pending_ones_can_be_left_out() -> None:
    drift = diff({3: "x", 1: "x", 2: "x"}, {}, order=lambda k: -k)
    assert drift.missing == (3, 2, 1)
    assert drift.without({2}.__contains__) == Drift(missing=(3, 1))


@pytest.mark.parametrize(
    ("held", "orphans", "refused"),
    [(1, 1, False), (10, 10, False), (100, 11, False), (22, 11, False), (21, 11, True), (1000, 900, True)],
)
def test_orphans_are_not_removed_when_most_of_a_stores_users_are_unknown(
    held: int, orphans: int, refused: bool
) -> None:
    found = Orphans(held, tuple(f"u{n}" for n in range(orphans)))
    assert (found.refusal is not None) is refused


# --- drift in the real stores ------------------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return store_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def session(settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Session]:
    async with open_stores(settings, pool, redis_client) as opened:
        yield opened


async def synced(pool: asyncpg.Pool, session: Session) -> tuple[Memory, Memory]:
    """Two users, both applied to both stores."""
    ana, bo = await remember(pool, "Ana"), await remember(pool, "Bo")
    await drain(session)
    return ana, bo


async def drifts(pool: asyncpg.Pool, session: Session, user_id: str) -> tuple[StoreDrift, StoreDrift]:
    vector = await session.vector(embedding=True)
    return (
        await graph_drift(pool, await session.graph(), user_id),
        await vector_drift(pool, vector, user_id, vector.model_version),
    )


def by_kind(found: StoreDrift) -> dict[str, tuple[int, int, int]]:
    return {k.kind: (len(k.drift.missing), len(k.drift.extra), len(k.drift.changed)) for k in found.kinds if k.drift}


async def test_a_user_the_outbox_kept_up_to_date_shows_no_drift(pool: asyncpg.Pool, session: Session) -> None:
    ana, _ = await synced(pool, session)
    graph, vector = await drifts(pool, session, ana.user_id)
    assert graph.total == vector.total == graph.pending == vector.pending == 0
    held = {k.kind: k.held for k in graph.kinds if k.held}
    assert held == {
        "User": 1,
        "MemoryUnit": 2,
        "Concept": 2,
        "DerivedArtifact": 1,
        "Community": 1,
        "IS_ABOUT": 1,
        "RELATED_TO": 1,
        "BELONGS_TO_COMMUNITY": 1,
        "DERIVED_FROM": 1,
        "HIGHLIGHTS": 2,  # what the artifact's content_data names and the user has
        "AUTHORED_BY": 2,  # each memory unit to its User
        "MENTIONS": 1,  # the memory unit the IS_ABOUT relationship joins to a concept
    }
    assert {k.kind: k.held for k in vector.kinds} == {"MemoryUnit": 2, "Concept": 2, "DerivedArtifact": 1}


async def test_graph_drift_of_each_kind_is_found_per_type_and_repaired(pool: asyncpg.Pool, session: Session) -> None:
    ana, bo = await synced(pool, session)
    uid = ana.user_id
    bo_before = await graph_drift(pool, await session.graph(), bo.user_id)
    stray = str(uuid.uuid4())
    # nodes: one missing, one extra, one changed
    await pool.execute("DELETE FROM runtime.graph_nodes WHERE node_key = $1", ana.units[1])
    await pool.execute(
        "INSERT INTO runtime.graph_nodes (label, node_key, user_id, properties, content_hash) "
        "VALUES ('MemoryUnit', $1, $2, '{}', 'stale')",
        stray,
        uid,
    )
    await pool.execute("UPDATE runtime.graph_nodes SET content_hash = 'edited' WHERE node_key = $1", ana.concepts[1])
    # relationships: one missing (a truth row no longer in the graph), one extra, one changed
    await pool.execute(
        "UPDATE runtime.knowledge_edges SET in_graph = false WHERE user_id = $1 AND relationship_type = $2",
        uid,
        RelationshipType.IS_ABOUT.value,
    )
    await pool.execute(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength, in_graph) VALUES ($1, $2, $3, 'Concept', $4, 'Community', $5, 1, true)",
        str(uuid.uuid4()),
        uid,
        ana.concepts[1],
        ana.community,
        StructuralRelationshipType.BELONGS_TO_COMMUNITY.value,
    )
    await pool.execute(
        "UPDATE runtime.knowledge_edges SET strength = 0.25 WHERE user_id = $1 AND relationship_type = $2",
        uid,
        StructuralRelationshipType.DERIVED_FROM.value,
    )
    await pool.execute(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type = $2 AND target_id = $3",
        uid,
        StructuralRelationshipType.HIGHLIGHTS.value,
        ana.concepts[1],
    )

    graph, _ = await drifts(pool, session, uid)
    assert by_kind(graph) == {
        "MemoryUnit": (1, 1, 0),
        "Concept": (0, 0, 1),
        "IS_ABOUT": (1, 0, 0),
        "BELONGS_TO_COMMUNITY": (0, 1, 0),
        "DERIVED_FROM": (0, 0, 1),
        "HIGHLIGHTS": (1, 0, 0),
    }
    memory_unit = next(k for k in graph.kinds if k.kind == "MemoryUnit")
    assert memory_unit.drift.missing == (ana.units[1],) and memory_unit.drift.extra == (stray,)
    assert memory_unit.as_json(5)["examples"]["extra"] == [stray]
    assert set(graph.repair) == {
        Ref(NodeLabel.MEMORY_UNIT, ana.units[1]),
        Ref(NodeLabel.MEMORY_UNIT, stray),
        Ref(NodeLabel.CONCEPT, ana.concepts[1]),
        Ref(NodeLabel.MEMORY_UNIT, ana.units[0]),  # source of the missing IS_ABOUT
        Ref(NodeLabel.DERIVED_ARTIFACT, ana.artifact),  # source of the changed DERIVED_FROM and missing HIGHLIGHTS
    }

    assert await record_refs(pool, uid, GRAPH, graph.repair) == len(graph.repair)
    assert {b.store: b.rows for b in await outbox.backlog(pool)} == {"graph": len(graph.repair), "vector": 0}
    pending, _ = await drifts(pool, session, uid)
    assert pending.total == 0 and pending.pending == graph.total == 7  # in the outbox: lag, not drift
    await drain(session)
    after, vector_after = await drifts(pool, session, uid)
    assert after.total == 0 and after.pending == 0 and vector_after.total == 0
    assert await graph_drift(pool, await session.graph(), bo.user_id) == bo_before  # the other user untouched


async def test_vector_drift_of_each_kind_is_found_and_repaired_with_real_embeddings(
    pool: asyncpg.Pool, session: Session
) -> None:
    ana, bo = await synced(pool, session)
    uid = ana.user_id
    stray = str(uuid.uuid4())
    await pool.execute("DELETE FROM runtime.vector_items WHERE source_entity_id = $1", ana.units[0])
    await pool.execute(
        "INSERT INTO runtime.vector_items (user_id, source_entity_type, source_entity_id, title, text_content, "
        "embedding_model_version, created_at, content_hash, embedding) "
        "SELECT user_id, source_entity_type, $2, title, text_content, embedding_model_version, created_at, "
        "content_hash, embedding FROM runtime.vector_items WHERE source_entity_id = $1",
        ana.units[1],
        stray,
    )
    await pool.execute(
        "UPDATE runtime.vector_items SET content_hash = 'edited' WHERE source_entity_id = $1", ana.concepts[0]
    )
    await pool.execute(
        "UPDATE runtime.vector_items SET embedding_model_version = 'old-model' WHERE source_entity_id = $1",
        ana.artifact,
    )

    _, vector = await drifts(pool, session, uid)
    assert by_kind(vector) == {"MemoryUnit": (1, 1, 0), "Concept": (0, 0, 1), "DerivedArtifact": (0, 0, 1)}
    assert {ref.entity_id for ref in vector.repair} == {ana.units[0], stray, ana.concepts[0], ana.artifact}
    vectors = await session.vector(embedding=True)
    assert await stale_vector_refs(vectors, uid, vectors.model_version) == [
        Ref(NodeLabel.DERIVED_ARTIFACT, ana.artifact)
    ]

    await record_refs(pool, uid, VECTOR, vector.repair)
    assert {b.store: b.rows for b in await outbox.backlog(pool)} == {"graph": 0, "vector": 4}
    await drain(session)
    graph_after, vector_after = await drifts(pool, session, uid)
    assert vector_after.total == 0 and graph_after.total == 0
    held = await vectors.fingerprints(uid)
    assert {key.source_entity_id for key in held} == {*ana.units, *ana.concepts, ana.artifact}
    assert {fp.embedding_model_version for fp in held.values()} == {vectors.model_version}
    assert (await drifts(pool, session, bo.user_id))[1].total == 0


async def test_a_relationship_to_an_entity_postgres_lacks_is_held_with_a_placeholder_and_repaired(
    pool: asyncpg.Pool, session: Session
) -> None:
    ana, _ = await synced(pool, session)
    ghost = str(uuid.uuid4())  # a concept id no row has (the web app deleted it)
    await pool.execute(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength) VALUES ($1, $2, $3, 'MemoryUnit', $4, 'Concept', 'INSPIRES', 0.5)",
        str(uuid.uuid4()),
        ana.user_id,
        ana.units[1],
        ghost,
    )
    await outbox.record_changes(pool, ana.user_id, [outbox.Change(NodeLabel.MEMORY_UNIT, ana.units[1])])
    await drain(session)
    graph, _ = await drifts(pool, session, ana.user_id)
    assert graph.total == 0
    assert (await (await session.graph()).node_hashes(ana.user_id, NodeLabel.CONCEPT))[ghost] is None

    await pool.execute("DELETE FROM runtime.graph_nodes WHERE node_key = $1", ghost)  # the placeholder lost
    graph, _ = await drifts(pool, session, ana.user_id)
    assert by_kind(graph) == {"Concept": (1, 0, 0)}
    assert graph.repair == (Ref(NodeLabel.MEMORY_UNIT, ana.units[1]),)  # its relationship's source brings it back
    await record_refs(pool, ana.user_id, GRAPH, graph.repair)
    await drain(session)
    assert (await drifts(pool, session, ana.user_id))[0].total == 0


async def test_the_configured_space_is_the_embedders_without_loading_it(session: Session, settings: Settings) -> None:
    vectors = await session.vector(embedding=True)
    space = configured_space(settings)
    assert (space.model_version, space.dimension) == (vectors.model_version, vectors.dimension)
    light = await session.vector()
    assert light is not vectors and light.model_version == vectors.model_version
