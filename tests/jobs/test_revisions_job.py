"""Through a real worker, the local embedding model and the scripted LLM (issue 19, item 1): a later conversation that
retells a memory and changes a fact leaves one memory unit and one card for the retold event, the changed fact's
current text with one revision, and a concept's new description; a reprocess leaves all of it as it was."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, load_sample_answers
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from store.llm_calls import list_llm_calls
from store.repos import cards, concepts, conversations, memory_revisions, memory_units, users
from tests.jobs.conftest import BurstRunner

FIRST = "I finally ran 10k without stopping! Coach Dani said easy pace builds the base. My shins were sore though."
LATER = "Dani still talks about my first 10k, by the river. And my shins are fine: the physio cleared four runs a week."
START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers(), llm_timeout_s=5)


async def conversation(pool: asyncpg.Pool, user_id: str, text: str, start: datetime) -> str:
    made = await conversations.create_conversation(pool, user_id, status="ended", start_time=start)
    await conversations.add_message(pool, user_id, made.id, role="user", content=text)
    return made.id


async def ingest(
    redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, conversation_id: str, **more: bool
) -> None:
    await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id, **more})
    await run_burst()


async def test_a_retelling_and_a_changed_fact_revise_memory_and_survive_a_reprocess(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user = await users.create_user(pool, str(uuid.uuid4()), email="maya@example.com", name="Maya")
    first = await conversation(pool, user.user_id, FIRST, START)
    await ingest(redis_client, pool, run_burst, first)
    before = {u.title: u for u in await memory_units.list_memory_units(pool, user.user_id)}
    cards_before = len(await cards.list_cards(pool, user.user_id))

    later = await conversation(pool, user.user_id, LATER, START + timedelta(days=14))
    await ingest(redis_client, pool, run_burst, later)

    (request,) = [r for r in llm_server.chat_requests if LATER in r.message_text()]
    assert "<earlier_memories>" in request.message_text("user")  # the earlier units were shown as handles
    after = {u.muid: u for u in await memory_units.list_memory_units(pool, user.user_id)}
    assert len(after) == len(before)  # no second unit for the retold run, none for the changed fact
    assert len(await cards.list_cards(pool, user.user_id)) == cards_before  # and no second card
    run = after[before["Ran 10k without stopping"].muid]
    assert "Dani still calls that run the start of it all" in run.content and run.importance_score == 9
    assert run.source_conversation_ids == [first, later] and run.creation_ts == before[run.title].creation_ts
    shins = after[before["Ten percent rule after shin splints"].muid]
    assert shins.title == "Shins healed: four runs a week"
    [running] = [c for c in await concepts.list_concepts(pool, user.user_id) if c.name == "Running"]
    assert running.description == "Maya's running training: four runs a week since her shins healed."
    history = await memory_revisions.list_revisions(pool, user.user_id)
    assert sorted((r.kind, r.entity_id) for r in history) == sorted(
        [("retold", run.muid), ("updated", shins.muid), ("updated", running.concept_id)]
    )
    assert {r.source_conversation_id for r in history} == {later}
    [shins_revision] = [r for r in history if r.entity_id == shins.muid]
    assert shins_revision.before["title"] == "Ten percent rule after shin splints"

    await ingest(redis_client, pool, run_burst, later, reprocess=True)

    again = {u.muid: u for u in await memory_units.list_memory_units(pool, user.user_id)}
    strip = {"last_modified_ts", "ingestion_ts"}
    assert {k: u.model_dump(exclude=strip) for k, u in again.items()} == {
        k: u.model_dump(exclude=strip) for k, u in after.items()
    }
    assert [(r.revision_id, r.before, r.after) for r in await memory_revisions.list_revisions(pool, user.user_id)] == [
        (r.revision_id, r.before, r.after) for r in history
    ]
    assert len(await list_llm_calls(pool, user.user_id)) == 3  # one call per ingestion, the reprocess included
