"""Memory is revised, never duplicated (issue 19): a later conversation that retells or updates an earlier memory
unit, or changes what is true of a concept, revises it in place with a revision row keeping what it replaced; a
reprocess writes the same revisions again; a later source's revision is never undone by an earlier one's reprocess;
forget-user takes the history with the user."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from core.ingestion import ConceptDraft, IngestionResult, MemoryUnitDraft
from core.revisions import RevisionKind
from core.vocabulary import NodeLabel
from store import forget, outbox
from store.ingestion_writes import memory_unit_id, write_ingestion
from store.repos import cards, concepts, conversations, memory_revisions, memory_units, users
from tests.memory_rows import memory_counts
from tests.store import testrows
from tests.store.test_ingestion_writes import ROWS_OF_ONE_WRITE, THRESHOLDS, WHEN, result_for


@pytest.fixture
async def two(pool: asyncpg.Pool) -> tuple[str, str, str]:
    """A user whose first conversation is ingested, and a second one (later) waiting to be."""
    user = await users.create_user(pool, "user-maya", email="maya@example.com", name="Maya")
    first = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=WHEN)
    second = await conversations.create_conversation(
        pool, user.user_id, status="ended", start_time=WHEN + timedelta(days=3)
    )
    await write_ingestion(pool, result_for(user.user_id, first.id), THRESHOLDS)
    return user.user_id, first.id, second.id


def later(
    user_id: str,
    conversation_id: str,
    revises: str | None,
    kind: RevisionKind | None,
    *,
    content: str = "Ran 14 km on Sunday, then 16 km a week later without stopping.",
    importance: float = 9,
    concept: ConceptDraft | None = None,
) -> IngestionResult:
    """The second conversation's result: one memory unit that retells or updates `revises` (or is new)."""
    base = result_for(user_id, conversation_id)
    unit = MemoryUnitDraft(
        key="m1",
        title="Longest runs yet",
        content=content,
        creation_ts=WHEN + timedelta(days=3),
        importance_score=importance,
        sentiment_score=0.9,
        revises=revises,
        revision=kind,
    )
    return base.model_copy(
        update={
            "memory_units": [unit],
            "concepts": [concept] if concept else [],
            "relationships": [],
            "growth_events": [],
        }
    )


async def test_a_retelling_leaves_one_memory_unit_enriched_and_one_card(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, first, second = two
    earlier = memory_unit_id(first, "m1")
    summary = await write_ingestion(pool, later(user_id, second, earlier, RevisionKind.RETOLD), THRESHOLDS)

    assert summary.memory_units == 0 and summary.memory_units_retold == 1
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE  # no second unit, no second card
    unit = await testrows.get_memory_unit(pool, user_id, earlier)
    assert unit is not None
    assert unit.content.startswith("Ran 14 km on Sunday, then 16 km") and unit.importance_score == 9
    assert unit.creation_ts == WHEN  # the earlier time stays
    assert unit.sentiment_score == 0.7  # a retelling adds detail; the feeling it had stays
    assert unit.source_conversation_ids == [first, second]
    [card] = [c for c in await cards.list_cards(pool, user_id) if c.source_entity_id == earlier]
    assert isinstance(card.display_data, dict) and card.display_data["title"] == "Longest runs yet"
    assert card.display_data["importance"] == 9
    [revision] = await memory_revisions.list_revisions(pool, user_id, entity_id=earlier)
    assert (revision.kind, revision.source_conversation_id) == ("retold", second)
    assert revision.before["content"] == "Ran 14 km on Sunday." and revision.before["importance_score"] == 8
    assert revision.after["importance_score"] == 9 and "creation_ts" not in revision.after


async def test_a_changed_fact_keeps_the_previous_text_with_when_and_where_from(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, first, second = two
    earlier = memory_unit_id(first, "m2")
    changed = later(user_id, second, earlier, RevisionKind.UPDATED, content="The knee is fine again.", importance=5)
    summary = await write_ingestion(pool, changed, THRESHOLDS)

    assert summary.memory_units_updated == 1
    unit = await testrows.get_memory_unit(pool, user_id, earlier)
    assert unit is not None and unit.content == "The knee is fine again." and unit.sentiment_score == 0.9
    [revision] = await memory_revisions.list_revisions(pool, user_id, entity_id=earlier)
    assert revision.kind == "updated" and revision.source_conversation_id == second
    assert revision.before["content"] == "Left knee hurt after the run."
    assert revision.after["content"] == "The knee is fine again."
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE


async def test_a_concepts_changed_description_is_revised_and_its_card_shows_it(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, _, second = two
    [goal] = [c for c in await concepts.list_concepts(pool, user_id) if c.name == "Half Marathon"]
    draft = ConceptDraft(
        key="c1",
        name=goal.name,
        normalized_name="half marathon",
        type=goal.type,
        description="Lisbon half marathon, finished in 2:05",
        existing_concept_id=goal.concept_id,
        revise_description=True,
    )
    summary = await write_ingestion(pool, later(user_id, second, None, None, concept=draft), THRESHOLDS)

    assert summary.concepts_revised == 1
    current = await testrows.get_concept(pool, user_id, goal.concept_id)
    assert current is not None and current.description == "Lisbon half marathon, finished in 2:05"
    [card] = [c for c in await cards.list_cards(pool, user_id) if c.source_entity_id == goal.concept_id]
    assert isinstance(card.display_data, dict)
    assert card.display_data["description"] == "Lisbon half marathon, finished in 2:05"
    [revision] = await memory_revisions.list_revisions(pool, user_id, entity_id=goal.concept_id)
    assert revision.before == {"description": "Lisbon half marathon in March"} and revision.kind == "updated"


async def test_reprocessing_the_retelling_writes_the_same_revision_and_state(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, first, second = two
    earlier = memory_unit_id(first, "m1")
    retelling = later(user_id, second, earlier, RevisionKind.RETOLD)
    await write_ingestion(pool, retelling, THRESHOLDS)
    once = (
        await testrows.get_memory_unit(pool, user_id, earlier),
        await memory_revisions.list_revisions(pool, user_id),
    )

    for _ in range(2):
        await write_ingestion(pool, retelling, THRESHOLDS, reprocess=True)
    again = (
        await testrows.get_memory_unit(pool, user_id, earlier),
        await memory_revisions.list_revisions(pool, user_id),
    )

    assert once[0] is not None and again[0] is not None
    assert again[0].model_dump(exclude={"last_modified_ts"}) == once[0].model_dump(exclude={"last_modified_ts"})
    assert [(r.revision_id, r.before, r.after) for r in again[1]] == [
        (r.revision_id, r.before, r.after) for r in once[1]
    ]
    assert await memory_counts(pool, user_id) == ROWS_OF_ONE_WRITE


async def test_a_reprocess_that_no_longer_retells_puts_the_earlier_memory_back(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, first, second = two
    earlier = memory_unit_id(first, "m1")
    before = await testrows.get_memory_unit(pool, user_id, earlier)
    await write_ingestion(pool, later(user_id, second, earlier, RevisionKind.RETOLD), THRESHOLDS)
    await write_ingestion(pool, later(user_id, second, None, None), THRESHOLDS, reprocess=True)

    restored = await testrows.get_memory_unit(pool, user_id, earlier)
    assert before is not None and restored is not None
    assert (restored.content, restored.importance_score, restored.source_conversation_ids) == (
        before.content,
        before.importance_score,
        [first],
    )
    assert await memory_revisions.list_revisions(pool, user_id) == []
    assert await memory_units.memory_unit_ids_from_conversation(pool, user_id, second) == [memory_unit_id(second, "m1")]


async def test_an_earlier_reprocess_never_undoes_what_a_later_conversation_revised(
    pool: asyncpg.Pool, two: tuple[str, str, str]
) -> None:
    user_id, first, second = two
    earlier = memory_unit_id(first, "m2")
    third = await conversations.create_conversation(pool, user_id, status="ended", start_time=WHEN + timedelta(days=9))
    await write_ingestion(
        pool, later(user_id, second, earlier, RevisionKind.UPDATED, content="Knee better."), THRESHOLDS
    )
    await write_ingestion(
        pool, later(user_id, third.id, earlier, RevisionKind.UPDATED, content="Knee fine."), THRESHOLDS
    )

    await write_ingestion(
        pool, later(user_id, second, earlier, RevisionKind.UPDATED, content="Other."), THRESHOLDS, reprocess=True
    )

    unit = await testrows.get_memory_unit(pool, user_id, earlier)
    assert unit is not None and unit.content == "Knee fine."  # what came last stays
    history = await memory_revisions.revisions_of(pool, user_id, [earlier])
    assert [(r.source_conversation_id, r.after["content"]) for r in history] == [
        (second, "Knee better."),
        (third.id, "Knee fine."),
    ]


async def test_revisions_go_to_the_stores_and_go_with_the_user(pool: asyncpg.Pool, two: tuple[str, str, str]) -> None:
    user_id, first, second = two
    await write_ingestion(pool, later(user_id, second, memory_unit_id(first, "m1"), RevisionKind.RETOLD), THRESHOLDS)
    [revision] = await memory_revisions.list_revisions(pool, user_id)
    waiting = await outbox.pending(pool, "graph", user_id, NodeLabel.REVISION, [revision.revision_id])
    assert waiting == {revision.revision_id}

    await forget.delete_postgres(pool, user_id, [first, second])
    assert await pool.fetchval("SELECT count(*) FROM memory_revisions WHERE user_id = $1", user_id) == 0
    assert await outbox.pending(pool, "graph", user_id, NodeLabel.REVISION, [revision.revision_id]) == {
        revision.revision_id  # its tombstone: the graph's Revision node goes too
    }
