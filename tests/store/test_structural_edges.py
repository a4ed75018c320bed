"""The graph's structural relationships follow from the rows (store/sync.py, outgoing_edges): a memory unit is
AUTHORED_BY its User (the User node is not isolated) and MENTIONS each concept an extracted relationship joins it to,
either way; a merged concept is MERGED_INTO the one that absorbed it."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from core.vocabulary import NodeLabel
from store.repos import concepts, users
from store.sync import outgoing_edges, read_records
from tests.store import testrows


async def test_authored_by_mentions_and_merged_into_come_from_the_rows(pool: asyncpg.Pool) -> None:
    user = (await users.create_user(pool, "graph-user", email="graph@example.org")).user_id
    unit = await testrows.insert_memory_unit(
        pool,
        user,
        title="Ran with Emma",
        content="c",
        creation_ts=datetime.now(UTC),
        importance_score=5,
        sentiment_score=0,
        source_conversation_id=None,
    )
    lonely = await testrows.insert_memory_unit(
        pool,
        user,
        title="Nothing related",
        content="c",
        creation_ts=datetime.now(UTC),
        importance_score=5,
        sentiment_score=0,
        source_conversation_id=None,
    )
    emma, run, runs = [
        await testrows.create_concept(pool, user, name=name, type="t", normalized_name=name.lower())
        for name in ("Emma", "Running", "Runs")
    ]
    for source, source_type, target, target_type in (
        (unit.muid, "MemoryUnit", emma.concept_id, "Concept"),  # unit -> concept
        (run.concept_id, "Concept", unit.muid, "MemoryUnit"),  # concept -> unit: still a mention
        (emma.concept_id, "Concept", run.concept_id, "Concept"),  # between concepts: no mention
    ):
        await testrows.upsert_edge(
            pool,
            user,
            source_id=source,
            source_type=source_type,
            target_id=target,
            target_type=target_type,
            relationship_type="RELATED_TO",
            strength=0.5,
            description=None,
            source_conversation_id=None,
        )
    await concepts.mark_merged(pool, user, run.concept_id, [runs.concept_id], at=datetime.now(UTC))

    nodes = {label: await read_records(pool, user, label, None) for label in (NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT)}
    edges = {(e.source.key, e.type.value, e.target.key) for e in await outgoing_edges(pool, user, nodes)}
    structural = {edge for edge in edges if edge[1] != "RELATED_TO"}
    assert structural == {
        (unit.muid, "AUTHORED_BY", user),
        (lonely.muid, "AUTHORED_BY", user),
        (unit.muid, "MENTIONS", emma.concept_id),
        (unit.muid, "MENTIONS", run.concept_id),
        (runs.concept_id, "MERGED_INTO", run.concept_id),
    }
