"""The goal achievement story through the insight job (a real worker, the real openai client, the scripted server):
the sample user reaches her goal of talking with her neighbours in Portuguese; the story is told from the goal's
first memory, which lies months before the cycle and reaches the request as one; a later cycle whose answer tells
the same goal again writes no second story."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer, load_all_sample_answers
from core.insight import goal_story_id
from store import ledger
from store.repos import cards, concepts, derived_artifacts, users
from store.repos._base import to_db
from tests.agents.test_insight import insight_answer
from tests.jobs.conftest import BurstRunner
from tests.jobs.test_insight_job import INSIGHT_ONLY, ingested_sample_user, section, trigger
from tests.store import testrows

GOAL = "Talking with the neighbours in Portuguese"
FIRST = "Ordering at the bakery in Portuguese"
"""Her first order at the bakery: IS_MILESTONE_FOR the goal (agents/samples/ingestion.json)."""
ACHIEVED = "Ordered at the bakery in Portuguese (voice note)"
TOLD_AGAIN = KeyedAnswer(
    match=f"{GOAL} (goal) (story told)",  # the later cycle's concepts (the instructions name the mark too)
    prompt="insight",
    answer=insight_answer(
        artifacts=[
            {
                "artifact_type": "insight_summary",
                "title": "Another week",
                "narrative": "You kept going.",
                "sources": ["@m:60-day Portuguese streak"],
            },
            {
                "artifact_type": "goal_achievement_story",
                "title": "Told twice",
                "narrative": "The same goal again.",
                "sources": [
                    f"@c:{GOAL}",
                    "@m:60-day Portuguese streak",
                    f"@m:{ACHIEVED}",
                ],
            },
        ],
        concept_merges=[],
        growth_events=[],
    ),
)
"""What a model that ignores the "(story told)" mark answers in the later cycle."""


pytestmark = pytest.mark.scripted_llm(
    answers=[TOLD_AGAIN, *load_all_sample_answers()], llm_timeout_s=2.0, llm_max_retries=0
)


@pytest.fixture
def insight_only(run_burst: BurstRunner) -> BurstRunner:
    run_burst.jobs = INSIGHT_ONLY
    return run_burst


async def test_a_reached_goal_is_told_once_from_its_first_memory(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, insight_only: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id = await ingested_sample_user(pool, redis_client, insight_only)
    user = await users.get_user(pool, user_id)
    assert user is not None
    [goal] = [c for c in await concepts.list_concepts(pool, user_id) if c.name == GOAL]
    assert goal.type == "goal"
    # where the goal began lies months before the cycle: outside its window, found through the goal's relationships
    first = await pool.fetchval("SELECT muid FROM memory_units WHERE user_id = $1 AND title = $2", user_id, FIRST)
    cycle_start = user.last_cycle_started_at or user.created_at
    await pool.execute(
        "UPDATE memory_units SET creation_ts = $3, ingestion_ts = $3 WHERE user_id = $1 AND muid = $2",
        user_id,
        first,
        to_db(cycle_start - timedelta(days=120)),
    )
    # the cycle's evidence: the voice note of a whole order in Portuguese is a milestone for the goal
    voice_note = await pool.fetchval(
        "SELECT muid FROM memory_units WHERE user_id = $1 AND title = $2", user_id, ACHIEVED
    )
    await testrows.upsert_edge(
        pool,
        user_id,
        source_id=voice_note,
        source_type="MemoryUnit",
        target_id=goal.concept_id,
        target_type="Concept",
        relationship_type="IS_MILESTONE_FOR",
        strength=0.9,
        description="A whole order with no English at all.",
        source_conversation_id=None,
    )
    before = len(llm_server.chat_requests)

    run_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, run_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    (request,) = llm_server.chat_requests[before:]
    text = request.message_text()
    assert FIRST not in section(text, "memory_units")
    assert f"{FIRST}: " in section(text, "earlier_memories")
    assert f"(recalled: where the goal '{GOAL}' began)" in section(text, "earlier_memories")
    story_id = goal_story_id(user_id, goal.concept_id)
    stories = await derived_artifacts.list_derived_artifacts(pool, user_id, artifact_type="goal_achievement_story")
    assert [(s.artifact_id, s.source_concept_id, s.title) for s in stories] == [
        (story_id, goal.concept_id, "Talking with your neighbours in Portuguese")
    ]
    data = stories[0].content_data or {}
    assert data["insight_kind"] == "goal_achievement_story" and data["goal_concept_id"] == goal.concept_id
    assert first in data["source_memory_unit_ids"] and len(data["source_memory_unit_ids"]) == 3
    assert [c.card_type for c in await cards.list_cards(pool, user_id) if c.source_entity_id == story_id] == [
        "goal_achievement_story"
    ]
    vector = await pool.fetchrow(  # the stores followed the commit: the story is recallable, tagged with its type
        "SELECT title, tags FROM runtime.vector_items WHERE user_id = $1 AND source_entity_id = $2", user_id, story_id
    )
    assert vector is not None and vector["tags"] == ["goal_achievement_story"]

    # a later cycle: the same memory learned again in it, and an answer that tells the goal once more
    later = datetime.now(UTC) - timedelta(hours=1)
    await users.start_cycle(pool, user_id, later)
    await pool.execute(
        "UPDATE memory_units SET ingestion_ts = $2 WHERE user_id = $1 AND muid <> $3",
        user_id,
        to_db(later + timedelta(minutes=30)),
        first,
    )
    before = len(llm_server.chat_requests)
    run_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, run_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    assert run.result["outcome"] == "written" and run.result["artifacts"] == 1  # its summary only
    (request,) = llm_server.chat_requests[before:]
    assert f"{GOAL} (goal) (story told)" in section(request.message_text(), "concepts")
    assert "where the goal" not in request.message_text()  # a told goal's beginnings are not read again
    again = await derived_artifacts.list_derived_artifacts(pool, user_id, artifact_type="goal_achievement_story")
    assert [(s.artifact_id, s.title) for s in again] == [(story_id, "Talking with your neighbours in Portuguese")]
    assert len([c for c in await cards.list_cards(pool, user_id) if c.card_type == "goal_achievement_story"]) == 1
