"""The graph's structural relationships follow from the rows (store/sync.py, outgoing_edges): a memory unit is
AUTHORED_BY its User (the User node is not isolated) and MENTIONS each concept an extracted relationship joins it to,
either way; a merged concept is MERGED_INTO the one that absorbed it; an artifact HIGHLIGHTS the memory units and
concepts its content_data cites and is DERIVED_FROM those it rests on, in both cases only those the user still has."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from core.vocabulary import NodeLabel
from store.repos import concepts, users
from store.sync import artifact_highlights, outgoing_edges, read_records
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


def test_an_artifact_highlights_what_its_content_data_cites_whatever_its_type() -> None:
    """Insight's id lists, a cycle report's objects, a new kind's own list names; wrong shapes are no highlight."""
    data = {
        "source_memory_unit_ids": ["m1", "m2", "m1"],  # insight_summary, trophy
        "source_concept_ids": ["c1"],
        "memory_highlights": [{"memory_unit_id": "m3", "title": "t"}, {"memory_unit_id": 4}, "m9"],  # cycle_report
        "top_concepts": [{"concept_id": "c2", "mentions": 3}, {"concept_id": ""}, None],
        "milestone_memory_unit_ids": ["m4"],  # a kind added later, citing by its own list name
        "concept_ids": "c9",  # not a list
        "insight_kind": "pattern",
        "growth": {"memory_unit_id": "m8"},  # not a list of objects
    }
    assert artifact_highlights(data) == [
        (NodeLabel.MEMORY_UNIT, "m1"),
        (NodeLabel.MEMORY_UNIT, "m2"),
        (NodeLabel.CONCEPT, "c1"),
        (NodeLabel.MEMORY_UNIT, "m3"),
        (NodeLabel.CONCEPT, "c2"),
        (NodeLabel.MEMORY_UNIT, "m4"),
    ]
    junk: list[object] = [
        None,
        [],
        "text",
        3,
        {"source_memory_unit_ids": None},
        {"top_concepts": [[{"concept_id": 1}]]},
    ]
    assert [artifact_highlights(value) for value in junk] == [[]] * len(junk)


async def test_highlights_join_an_artifact_to_what_the_user_still_has(pool: asyncpg.Pool) -> None:
    """An insight's and a cycle report's HIGHLIGHTS come from their rows; an id the user no longer has (a memory
    forgotten since), another user's, or a value of the wrong kind is no relationship and breaks nothing."""
    user = (await users.create_user(pool, "highlighting", email="hl@example.org")).user_id
    other = (await users.create_user(pool, "someone-else", email="else@example.org")).user_id

    async def unit(owner: str, title: str) -> str:
        found = await testrows.insert_memory_unit(
            pool,
            owner,
            title=title,
            content="c",
            creation_ts=datetime.now(UTC),
            importance_score=5,
            sentiment_score=0,
            source_conversation_id=None,
        )
        return found.muid

    run, rest, theirs = await unit(user, "Ran"), await unit(user, "Rested"), await unit(other, "Theirs")
    running = (
        await testrows.create_concept(pool, user, name="Running", type="t", normalized_name="running")
    ).concept_id
    insight = await testrows.create_derived_artifact(
        pool,
        user,
        artifact_type="insight_summary",
        title="i",
        content_data={"source_memory_unit_ids": [run, theirs, "forgotten"], "source_concept_ids": [running, 5]},
    )
    report = await testrows.create_derived_artifact(
        pool,
        user,
        artifact_type="cycle_report",
        title="r",
        content_data={"memory_highlights": [{"memory_unit_id": rest}, {"memory_unit_id": None}], "top_concepts": 1},
    )
    nodes = {NodeLabel.DERIVED_ARTIFACT: await read_records(pool, user, NodeLabel.DERIVED_ARTIFACT, None)}
    edges = await outgoing_edges(pool, user, nodes)
    assert {(e.source.key, e.target.label, e.target.key) for e in edges if e.type.value == "HIGHLIGHTS"} == {
        (insight.artifact_id, NodeLabel.MEMORY_UNIT, run),
        (insight.artifact_id, NodeLabel.CONCEPT, running),
        (report.artifact_id, NodeLabel.MEMORY_UNIT, rest),
    }
    # what it rests on (DERIVED_FROM), read from the same lists, is held to the same rule
    assert {(e.source.key, e.target.label, e.target.key) for e in edges if e.type.value == "DERIVED_FROM"} == {
        (insight.artifact_id, NodeLabel.MEMORY_UNIT, run),
        (insight.artifact_id, NodeLabel.CONCEPT, running),
    }
