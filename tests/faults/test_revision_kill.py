"""Issue 19's revisions under kill -9: a worker killed while the model answers the later conversation (the one that
retells a memory and changes a fact) leaves nothing half-written; the worker that takes the job over writes the same
single memory unit for the retold event, the changed fact's current text and exactly one revision of each, as a run
without the kill does (tests/jobs/test_revisions_job.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, load_sample_answers
from store.repos import cards, memory_revisions, memory_units, users
from tests.faults.conftest import Fleet, enqueue_ingestions, llm_env, wait_processed, worker_group
from tests.jobs.conftest import wait_for_workers, wait_progressing
from tests.jobs.test_revisions_job import FIRST, LATER, START, conversation

THINK_S = 4.0
"""The model's time on every answer: long enough for the kill to land while the later conversation's call is open."""


async def test_a_kill_during_the_retelling_leaves_one_unit_and_one_revision_each(
    database_url: str, redis_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    answers = [dataclasses.replace(answer, delay_s=THINK_S) for answer in load_sample_answers()]
    with ScriptedLLMServer(keyed_answers=answers) as llm:
        group = worker_group(database_url, redis_url, tmp_path, llm_env(llm))
        try:
            fleet = Fleet(group, 1)
            await wait_for_workers(redis_client, 1)
            user = await users.create_user(pool, str(uuid.uuid4()), email="maya@example.com", name="Maya")
            first = await conversation(pool, user.user_id, FIRST, START)
            await enqueue_ingestions(redis_client, pool, [first])
            await wait_processed(pool, [first], fleet)
            before = {u.title: u for u in await memory_units.list_memory_units(pool, user.user_id)}
            cards_before = len(await cards.list_cards(pool, user.user_id))

            later = await conversation(pool, user.user_id, LATER, START + timedelta(days=14))
            await enqueue_ingestions(redis_client, pool, [later])

            async def later_calls() -> int:
                return sum(LATER in request.message_text() for request in llm.chat_requests)

            await wait_progressing(later_calls, lambda n: n >= 1, what="the later conversation's LLM call")
            await asyncio.sleep(THINK_S / 4)  # the call is open: the model has not answered yet
            assert await memory_revisions.list_revisions(pool, user.user_id) == []
            fleet.kill(fleet.live[0])  # kill -9 mid-call; the replacement takes the job over after the lease
            await wait_processed(pool, [later], fleet)
            assert await later_calls() == 2  # the killed call and the takeover's; nothing else was paid for
        finally:
            group.stop_all()

    after = {u.muid: u for u in await memory_units.list_memory_units(pool, user.user_id)}
    assert len(after) == len(before) and len(await cards.list_cards(pool, user.user_id)) == cards_before
    run = after[before["Ran 10k without stopping"].muid]
    assert run.source_conversation_ids == [first, later]
    shins = after[before["Ten percent rule after shin splints"].muid]
    assert shins.title == "Shins healed: four runs a week"
    history = await memory_revisions.list_revisions(pool, user.user_id)
    assert sorted(r.kind for r in history) == ["retold", "updated", "updated"]  # the run, the shins, Running
    assert {r.source_conversation_id for r in history} == {later}
