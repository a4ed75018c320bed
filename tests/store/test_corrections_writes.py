"""The user's corrections applied in one transaction (issue 19, item 5): each decision becomes a revision whose source
is the interaction, the batch is settled with it, and applying it again changes nothing."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from core.corrections import CARD_TARGET, CorrectionAction, CorrectionDecision
from store.corrections_writes import added_memory_id, read_targets, write_corrections
from store.ingestion_writes import memory_unit_id, write_ingestion
from store.repos import cards, concepts, consumed_interactions, conversations, memory_revisions, users
from store.repos._base import utc_now
from tests.memory_rows import memory_counts
from tests.store import testrows
from tests.store.test_ingestion_writes import THRESHOLDS, WHEN, result_for


@pytest.fixture
async def maya(pool: asyncpg.Pool) -> tuple[str, str]:
    user = await users.create_user(pool, "user-maya", email="maya@example.com", name="Maya")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=WHEN)
    await write_ingestion(pool, result_for(user.user_id, conversation.id), THRESHOLDS)
    return user.user_id, conversation.id


async def claimed(pool: asyncpg.Pool, user_id: str) -> list[str]:
    batch = await consumed_interactions.claim_interactions(
        pool, user_id, "job-1", ["correction", "reflection"], limit=10
    )
    return [i.interaction_id for i in batch]


async def states(pool: asyncpg.Pool) -> dict[str, tuple[str, str | None]]:
    rows = await pool.fetch("SELECT interaction_id, state, reason FROM runtime.consumed_interactions")
    return {row["interaction_id"]: (row["state"], row["reason"]) for row in rows}


async def test_each_decision_is_a_revision_from_its_interaction_and_the_batch_is_settled(
    pool: asyncpg.Pool, maya: tuple[str, str]
) -> None:
    user_id, conversation_id = maya
    run, knee = memory_unit_id(conversation_id, "m1"), memory_unit_id(conversation_id, "m2")
    [goal] = [c for c in await concepts.list_concepts(pool, user_id) if c.name == "Half Marathon"]
    at = iter(utc_now() + timedelta(milliseconds=10 * i) for i in range(6))  # ties in ms would order by id
    fix = await testrows.write_interaction(
        pool, user_id, "correction", text="It was 15 km", target=("MemoryUnit", run), at=next(at)
    )
    drop = await testrows.write_interaction(
        pool, user_id, "correction", text="Not my knee", target=("MemoryUnit", knee), at=next(at)
    )
    race = await testrows.write_interaction(
        pool, user_id, "correction", text="Porto", target=("Concept", goal.concept_id), at=next(at)
    )
    note = await testrows.write_interaction(pool, user_id, "reflection", text="I love early runs", at=next(at))
    idle = await testrows.write_interaction(pool, user_id, "reflection", text="ok", at=next(at))
    unseen = await testrows.write_interaction(pool, user_id, "card_opened", text="not ours", at=next(at))
    batch = await claimed(pool, user_id)
    assert batch == [fix, drop, race, note, idle]  # oldest first; the web app's own types are never claimed

    decisions = [
        CorrectionDecision(fix, CorrectionAction.REVISE_MEMORY, "15 km", target_id=run, content="Ran 15 km."),
        CorrectionDecision(drop, CorrectionAction.FORGET_MEMORY, "not hers", target_id=knee),
        CorrectionDecision(
            race, CorrectionAction.REVISE_CONCEPT, "Porto", target_id=goal.concept_id, description="Porto"
        ),
        CorrectionDecision(
            note, CorrectionAction.ADD_MEMORY, "keep", title="Early runs", content="Loves them.", importance=8
        ),
    ]
    summary = await write_corrections(pool, user_id, batch, decisions, card_importance=6)

    assert summary.as_dict() == {"applied": 4, "ignored": 1, "failed": 0, "revisions": 4}
    corrected_run = await testrows.get_memory_unit(pool, user_id, run)
    assert (
        corrected_run is not None and corrected_run.content == "Ran 15 km." and corrected_run.title == "Longest run yet"
    )
    assert await testrows.get_memory_unit(pool, user_id, knee) is None
    assert (await testrows.get_concept(pool, user_id, goal.concept_id)).description == "Porto"  # type: ignore[union-attr]
    added = await testrows.get_memory_unit(pool, user_id, added_memory_id(note))
    assert added is not None and added.source_conversation_id is None and added.importance_score == 8
    history = {
        (r.entity_id, r.kind, r.source_interaction_id) for r in await memory_revisions.list_revisions(pool, user_id)
    }
    assert history == {
        (run, "corrected", fix),
        (knee, "forgotten", drop),
        (goal.concept_id, "corrected", race),
        (added.muid, "added", note),
    }
    [forgotten] = await memory_revisions.revisions_of(pool, user_id, [knee])
    assert forgotten.before == {} and forgotten.after == {}  # when and why, never the text
    assert {c.source_entity_id for c in await cards.list_cards(pool, user_id)} >= {run, added.muid}
    assert knee not in {c.source_entity_id for c in await cards.list_cards(pool, user_id)}
    assert await states(pool) == {
        fix: ("applied", "15 km"),
        drop: ("applied", "not hers"),
        race: ("applied", "Porto"),
        note: ("applied", "keep"),
        idle: ("ignored", "no decision"),
    }
    assert unseen not in await states(pool)

    counts = await memory_counts(pool, user_id)
    again = await write_corrections(pool, user_id, batch, decisions, card_importance=6)  # a duplicate write
    settled = await states(pool)
    assert again.as_dict() == {"applied": 0, "ignored": 0, "failed": 0, "revisions": 0}  # settled: applied once
    assert await memory_counts(pool, user_id) == counts and await states(pool) == settled
    assert await claimed(pool, user_id) == []  # settled: nothing to decide again


async def test_a_target_gone_since_fails_its_interaction_and_a_card_stands_for_its_entity(
    pool: asyncpg.Pool, maya: tuple[str, str]
) -> None:
    user_id, conversation_id = maya
    run = memory_unit_id(conversation_id, "m1")
    [card] = [c for c in await cards.list_cards(pool, user_id) if c.source_entity_id == run]
    feedback = await testrows.write_interaction(
        pool, user_id, "correction", target=(CARD_TARGET, card.card_id), structured={"verdict": "inaccurate"}
    )
    stranger = await testrows.write_interaction(pool, user_id, "correction", target=("MemoryUnit", "someone-else"))
    batch = await consumed_interactions.claim_interactions(pool, user_id, "job-1", ["correction"], limit=10)
    targets = await read_targets(pool, user_id, batch)
    assert targets.of == {feedback: run, stranger: None} and set(targets.memory_units) == {run}

    await write_corrections(
        pool,
        user_id,
        [feedback],
        [CorrectionDecision(feedback, CorrectionAction.FORGET_MEMORY, "wrong", target_id=run)],
        card_importance=6,
    )
    late = await testrows.write_interaction(pool, user_id, "correction", text="15 km", target=("MemoryUnit", run))
    [pending_late] = [
        i.interaction_id
        for i in await consumed_interactions.claim_interactions(pool, user_id, "job-2", ["correction"], limit=10)
        if i.interaction_id == late
    ]
    await write_corrections(
        pool,
        user_id,
        [pending_late, stranger],
        [CorrectionDecision(late, CorrectionAction.REVISE_MEMORY, "15", target_id=run, content="15 km")],
        card_importance=6,
    )
    assert (await states(pool))[late] == ("failed", "the memory it corrects is gone")
