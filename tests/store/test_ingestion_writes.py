"""write_ingestion on a real database: exact rows, written once, replaced on reprocess, never half-written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from core.ingestion import (
    ConceptDraft,
    EntityRef,
    ForwardContext,
    GrowthEventDraft,
    IngestionResult,
    IngestionStatus,
    MemoryUnitDraft,
    RelationshipDraft,
    UnresolvedTopic,
)
from core.vocabulary import EntityKind, GrowthDimension, RelationshipType
from store.ingestion_writes import IngestionThresholds, memory_unit_id, write_ingestion
from store.outbox import STORES
from store.repos import concepts, conversations, memory_units, users
from tests.memory_rows import memory_counts
from tests.store import testrows

THRESHOLDS = IngestionThresholds(importance=3, card_importance=6)
WHEN = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)


def mu(key: str) -> EntityRef:
    return EntityRef(kind=EntityKind.MEMORY_UNIT, key=key)


def result_for(
    user_id: str, conversation_id: str, *, importance: float = 7, existing_concept_id: str | None = None
) -> IngestionResult:
    return IngestionResult(
        conversation_id=conversation_id,
        user_id=user_id,
        status=IngestionStatus.EXTRACTED,
        title="Training for the half marathon",
        context_summary="Maya ran 14 km and worries about her knee.",
        importance_score=importance,
        memory_units=[
            MemoryUnitDraft(
                key="m1",
                title="Longest run yet",
                content="Ran 14 km on Sunday.",
                creation_ts=WHEN,
                importance_score=8,
                sentiment_score=0.7,
            ),
            MemoryUnitDraft(
                key="m2",
                title="Knee twinge",
                content="Left knee hurt after the run.",
                creation_ts=WHEN,
                importance_score=4,
                sentiment_score=-0.3,
            ),
        ],
        concepts=[
            ConceptDraft(
                key="c1",
                name="Half Marathon",
                normalized_name="half marathon",
                type="goal",
                description="Lisbon half marathon in March",
                existing_concept_id=existing_concept_id,
            ),
            ConceptDraft(
                key="c2",
                name="Running",
                normalized_name="running",
                type="activity",
                description=None,
                existing_concept_id=None,
            ),
        ],
        relationships=[
            RelationshipDraft(
                source=mu("m1"),
                target=EntityRef(kind=EntityKind.CONCEPT, key="c1"),
                relationship_type=RelationshipType.IS_ABOUT,
                strength=0.9,
                description="the long run is training for it",
            ),
            RelationshipDraft(
                source=EntityRef(kind=EntityKind.CONCEPT, key="c2"),
                target=EntityRef(kind=EntityKind.CONCEPT, key="c1"),
                relationship_type=RelationshipType.ENABLES,
                strength=0.6,
                description="running enables the race",
            ),
        ],
        growth_events=[
            GrowthEventDraft(about=mu("m1"), dim_key=GrowthDimension.ACT_SELF, delta=0.5, rationale="kept the plan"),
        ],
        forward_context=ForwardContext(
            proactive_greeting="How is the knee?",
            unresolved_topics=[UnresolvedTopic(topic="knee", suggested_question="Did the twinge come back?")],
            suggested_focus="recovery",
        ),
        windows=1,
        llm_calls=1,
        prompt_tokens=900,
        completion_tokens=300,
        model="test-model",
        prompt_name="ingestion",
        prompt_version="abc123",
    )


ROWS_OF_ONE_WRITE = {"memory_units": 2, "concepts": 2, "growth_events": 1, "cards": 3, "edges": 2}
"""What result_for writes: one card for the important memory unit (8 >= 6) and one per new concept, none for m2."""
NO_ROWS = {"memory_units": 0, "concepts": 0, "growth_events": 0, "cards": 0, "edges": 0}


@pytest.fixture
async def ended(pool: asyncpg.Pool) -> tuple[str, str]:
    user = await users.create_user(pool, "user-maya", email="maya@example.com", name="Maya")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    return user.user_id, conversation.id


async def test_writes_every_row_once_and_marks_processed(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    user_id, conversation_id = ended
    summary = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)

    assert summary.outcome == "written"
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE
    unit = await testrows.get_memory_unit(pool, user_id, memory_unit_id(conversation_id, "m1"))
    assert unit is not None and unit.title == "Longest run yet" and unit.source_conversation_id == conversation_id
    assert unit.creation_ts == WHEN and unit.importance_score == 8 and unit.sentiment_score == 0.7
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None
    assert (conversation.status, conversation.title, conversation.importance_score) == (
        "processed",
        "Training for the half marathon",
        7,
    )
    user = await users.get_user(pool, user_id)
    assert user is not None and user.concepts_created_in_cycle == 2
    package = user.next_conversation_context_package
    assert isinstance(package, dict) and package["proactive_greeting"] == "How is the knee?"
    assert package["source_conversation_id"] == conversation_id
    event = (await testrows.list_growth_events(pool, user_id))[0]
    assert (event.entity_id, event.entity_type) == (unit.muid, "MemoryUnit")
    assert (event.dim_key, event.delta) == ("act_self", 0.5)


async def test_second_write_changes_nothing(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    user_id, conversation_id = ended
    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    before = await memory_counts(pool, user_id)
    again = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    assert again.outcome == "already_processed"
    assert await memory_counts(pool, user_id) == before
    user = await users.get_user(pool, user_id)
    assert user is not None and user.concepts_created_in_cycle == 2


async def test_concurrent_writers_of_one_conversation_write_once(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    """A job redelivered while the first run is still writing: the row lock makes the second one a no-op."""
    user_id, conversation_id = ended
    outcomes = await asyncio.gather(
        *(write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS) for _ in range(3))
    )
    assert sorted(o.outcome for o in outcomes) == ["already_processed", "already_processed", "written"]
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE


async def test_reprocess_replaces_what_the_conversation_produced(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    user_id, conversation_id = ended
    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    summary = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS, reprocess=True)
    assert summary.outcome == "written"
    assert summary.replaced == {
        "memory_units": 2,
        "memory_units_removed": 0,  # the same extraction: revised in place under the same ids
        "cards": 1,
        "growth_events": 1,
        "relationships": 2,
        "artifact_sources": 0,
    }
    assert summary.concepts_created == 0 and summary.concepts_reused == 2  # concepts are kept and matched by name
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE


async def test_reprocess_keeps_what_points_at_its_memory_and_tells_the_stores(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    """Issue 18 defect 4: a reprocess deleted and re-created the conversation's memory units, so the foreign key
    nulled `derived_artifacts.source_memory_unit_id` of every insight citing them, with no outbox row: the derived
    stores kept the old source and reconcile reported drift. Now a unit derived again keeps its id and its citations;
    one the new extraction drops leaves its citations with an outbox row for each artifact."""
    user_id, conversation_id = ended
    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    m1, m2 = memory_unit_id(conversation_id, "m1"), memory_unit_id(conversation_id, "m2")
    steady = await testrows.create_derived_artifact(
        pool,
        user_id,
        artifact_type="pattern",
        title="Long runs",
        source_memory_unit_id=m1,
        content_data={"source_memory_unit_ids": [m1]},
    )
    knee = await testrows.create_derived_artifact(
        pool,
        user_id,
        artifact_type="tension",
        title="The knee",
        source_memory_unit_id=m2,
        content_data={"source_memory_unit_ids": [m2, m1], "note": "kept"},
    )
    await pool.execute("DELETE FROM runtime.outbox")

    same = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS, reprocess=True)
    assert same.replaced["memory_units_removed"] == 0 and same.replaced["artifact_sources"] == 0
    for artifact in (steady, knee):
        again = await testrows.get_derived_artifact(pool, user_id, artifact.artifact_id)
        assert again is not None and again.source_memory_unit_id == artifact.source_memory_unit_id
    assert await outbox_labels(pool, "DerivedArtifact") == []
    assert sorted(await outbox_labels(pool, "MemoryUnit")) == sorted([m1, m2])

    await pool.execute("DELETE FROM runtime.outbox")
    only_m1 = result_for(user_id, conversation_id).model_copy(
        update={"memory_units": result_for(user_id, conversation_id).memory_units[:1]}
    )
    dropped = await write_ingestion(pool, only_m1, THRESHOLDS, reprocess=True)
    assert dropped.replaced["memory_units_removed"] == 1 and dropped.replaced["artifact_sources"] == 1
    assert [u.muid for u in await memory_units.list_memory_units(pool, user_id)] == [m1]
    moved = await testrows.get_derived_artifact(pool, user_id, knee.artifact_id)
    assert moved is not None and moved.source_memory_unit_id == m1
    assert moved.content_data == {"source_memory_unit_ids": [m1], "note": "kept"}
    kept = await testrows.get_derived_artifact(pool, user_id, steady.artifact_id)
    assert kept is not None and kept.source_memory_unit_id == m1
    assert await outbox_labels(pool, "DerivedArtifact") == [knee.artifact_id]
    assert sorted(await outbox_labels(pool, "MemoryUnit")) == sorted([m1, m2])  # m2 leaves the stores


async def outbox_labels(pool: asyncpg.Pool, label: str) -> list[str]:
    rows = await pool.fetch("SELECT DISTINCT entity_id FROM runtime.outbox WHERE label = $1 ORDER BY entity_id", label)
    return [row["entity_id"] for row in rows]


async def test_concepts_are_reused_by_handle_and_by_normalized_name(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    user_id, conversation_id = ended
    first = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    assert first.concepts_created == 2
    goal = next(c for c in await concepts.list_concepts(pool, user_id) if c.type == "goal")

    second_conversation = await conversations.create_conversation(pool, user_id, status="ended")
    second = await write_ingestion(
        pool, result_for(user_id, second_conversation.id, existing_concept_id=goal.concept_id), THRESHOLDS
    )
    assert (second.concepts_created, second.concepts_reused) == (0, 2)
    assert len(await concepts.list_concepts(pool, user_id)) == 2
    user = await users.get_user(pool, user_id)
    assert user is not None and user.concepts_created_in_cycle == 2


async def test_below_threshold_is_processed_without_memory(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    user_id, conversation_id = ended
    summary = await write_ingestion(pool, result_for(user_id, conversation_id, importance=2), THRESHOLDS)
    assert summary.outcome == "below_threshold"
    assert await memory_counts(pool, user_id) == NO_ROWS
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed" and conversation.importance_score == 2


async def test_a_failure_half_way_leaves_nothing(pool: asyncpg.Pool, ended: tuple[str, str]) -> None:
    """An edge that violates a constraint (strength > 1 slipped past validation) rolls back every row before it."""
    user_id, conversation_id = ended
    bad = result_for(user_id, conversation_id)
    bad.relationships[1].strength = 1.5
    with pytest.raises(asyncpg.CheckViolationError):
        await write_ingestion(pool, bad, THRESHOLDS)
    assert await memory_counts(pool, user_id) == NO_ROWS
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "ended"


async def test_an_older_conversation_finishing_later_does_not_replace_the_next_greeting(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    user_id, newer_id = ended
    older = await conversations.create_conversation(
        pool, user_id, status="ended", start_time=datetime(2026, 1, 1, tzinfo=UTC)
    )
    await write_ingestion(pool, result_for(user_id, newer_id), THRESHOLDS)
    stale = result_for(user_id, older.id)
    assert stale.forward_context is not None
    stale.forward_context.proactive_greeting = "An old greeting"
    await write_ingestion(pool, stale, THRESHOLDS)

    user = await users.get_user(pool, user_id)
    assert user is not None and isinstance(user.next_conversation_context_package, dict)
    assert user.next_conversation_context_package["proactive_greeting"] == "How is the knee?"
    assert user.next_conversation_context_package["source_conversation_id"] == newer_id


async def test_concurrent_ingestions_of_one_user_take_turns_and_the_newest_greeting_wins(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    """Four conversations of one user written at once, oldest last: the owner's row lock makes them take turns, so
    the shared concepts are created once, the cycle count adds up, and the newest conversation's greeting stays."""
    user_id, _ = ended
    results = []
    for day in range(4):
        conversation = await conversations.create_conversation(
            pool, user_id, status="ended", start_time=datetime(2026, 2, 1 + day, tzinfo=UTC)
        )
        result = result_for(user_id, conversation.id)
        assert result.forward_context is not None
        result.forward_context.proactive_greeting = f"greeting of day {day}"
        results.append(result)

    await asyncio.gather(*(write_ingestion(pool, result, THRESHOLDS) for result in reversed(results)))

    user = await users.get_user(pool, user_id)
    assert user is not None and isinstance(user.next_conversation_context_package, dict)
    assert user.next_conversation_context_package["proactive_greeting"] == "greeting of day 3"
    assert user.concepts_created_in_cycle == 2
    assert (await memory_counts(pool, user_id))["concepts"] == 2
    assert (await memory_counts(pool, user_id))["memory_units"] == 8


async def test_a_failed_conversation_that_still_holds_memory_is_replaced_not_crashed_on(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    """Issue 10 item 3: a conversation left `failed` with an earlier ingestion's rows (a failed reprocess did that
    before, or the web app moved it back) failed every plain trigger with UniqueViolationError memory_units_pkey."""
    user_id, conversation_id = ended
    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    await pool.execute("UPDATE conversations SET status = 'failed' WHERE id = $1", conversation_id)

    summary = await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)

    assert summary.outcome == "written"
    assert summary.replaced == {
        "memory_units": 2,
        "memory_units_removed": 0,  # the same extraction: revised in place under the same ids
        "cards": 1,
        "growth_events": 1,
        "relationships": 2,
        "artifact_sources": 0,
    }
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"


async def test_an_ingestion_write_leaves_last_active_at_to_the_web_app(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    """Issue 12: last_active_at is the user's activity (@updatedAt on the web app's side), not Orrery's work."""
    user_id, conversation_id = ended
    seen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await pool.execute("UPDATE users SET last_active_at = $2 WHERE user_id = $1", user_id, seen.replace(tzinfo=None))

    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)  # record_ingestion ran
    await users.start_cycle(pool, user_id, WHEN)

    user = await users.get_user(pool, user_id)
    assert user is not None and user.concepts_created_in_cycle == 0 and user.last_cycle_started_at == WHEN
    assert user.last_active_at == seen


@pytest.mark.parametrize(
    ("status", "after", "key"),
    [
        ("ended", "failed", "failure"),
        ("processing", "failed", "failure"),
        ("failed", "failed", "failure"),
        ("processed", "processed", "reprocess_failure"),  # a failed reprocess: the memory stays, and is right
        ("active", "active", None),  # triggered too early: it is ingested when it ends, so it must not be failed
    ],
)
async def test_marking_a_conversation_failed_depends_on_where_it_stands(
    pool: asyncpg.Pool, ended: tuple[str, str], status: str, after: str, key: str | None
) -> None:
    user_id, conversation_id = ended
    await pool.execute("UPDATE conversations SET status = $2 WHERE id = $1", conversation_id, status)

    assert await conversations.mark_conversation_failed(pool, user_id, conversation_id, "gave up") == after

    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == after
    if key is None:
        assert not conversation.metadata  # untouched
    else:
        assert conversation.metadata is not None and set(conversation.metadata) == {key}
        assert conversation.metadata[key]["reason"] == "gave up"


async def test_the_write_records_outbox_rows_for_both_stores_in_its_transaction(
    pool: asyncpg.Pool, ended: tuple[str, str]
) -> None:
    """Every entity the write created or touched, once per derived store."""
    user_id, conversation_id = ended
    await write_ingestion(pool, result_for(user_id, conversation_id), THRESHOLDS)
    rows = await pool.fetch("SELECT store, label, entity_id FROM runtime.outbox WHERE user_id = $1", user_id)
    by_store = {store: sorted((r["label"], r["entity_id"]) for r in rows if r["store"] == store) for store in STORES}
    assert by_store["graph"] == by_store["vector"]
    labels = [label for label, _ in by_store["graph"]]
    assert labels.count("User") == 1 and "MemoryUnit" in labels and "Concept" in labels
    units = await pool.fetch("SELECT muid FROM memory_units WHERE user_id = $1", user_id)
    assert {("MemoryUnit", r["muid"]) for r in units} <= set(by_store["graph"])
