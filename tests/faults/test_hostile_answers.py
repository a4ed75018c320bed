"""Hostile LLM answers that pass the schema but that Postgres cannot store, or that run away: each must cost a
bounded number of LLM calls (the answer and the one repair request), end the conversation `failed` with the reason,
and write nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from store import ledger
from store.llm_calls import list_llm_calls
from store.repos import conversations
from tests.faults.conftest import SAMPLE
from tests.jobs.conftest import BurstRunner
from tests.jobs.test_ingest_job import ingest, one_conversation, pytestmark  # noqa: F401  (its scripted LLM)
from tests.memory_rows import memory_counts

Answer = dict[str, Any]


def _edit(change: Callable[[Answer], None]) -> Answer:
    answer: Answer = copy.deepcopy(SAMPLE.answer)
    change(answer)
    return answer


def _unit(index: int) -> dict[str, Any]:
    return {
        "key": f"m{index}",
        "title": f"t{index}",
        "content": "c",
        "creation_ts": None,
        "importance": 5,
        "sentiment": 0.0,
    }


HOSTILE_ANSWERS: dict[str, Answer] = {
    "nul-in-memory-text": _edit(lambda a: a["memory_units"][0].update(content="ran 10k\u0000 today")),
    "nul-in-concept-name": _edit(lambda a: a["concepts"][0].update(name="Run\u0000ning")),
    "timestamp-past-9999": _edit(lambda a: a["memory_units"][0].update(creation_ts="9999-12-31T23:59:59-23:59")),
    "timestamp-before-year-1": _edit(lambda a: a["memory_units"][0].update(creation_ts="0001-01-01T00:00:00+14:00")),
    "3000-memory-units": _edit(lambda a: a.update(memory_units=[_unit(i) for i in range(1, 3001)], relationships=[])),
    "blank-concept-name": _edit(lambda a: a["concepts"][0].update(name="   ")),
    "blank-concept-type": _edit(lambda a: a["concepts"][0].update(type="")),
    "empty-memory-title": _edit(lambda a: a["memory_units"][0].update(title="")),
}

REPAIRS = 1
"""Validation errors go back to the model once (DESIGN.md: answers are repaired at most once)."""


@pytest.mark.parametrize("name", list(HOSTILE_ANSWERS))
async def test_a_hostile_answer_fails_the_conversation_and_writes_nothing(
    name: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(*[ScriptedReply.json(HOSTILE_ANSWERS[name])] * 12)  # the same answer however often asked
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst(timeout=120)

    calls = await list_llm_calls(pool, user_id)
    assert len(calls) <= 1 + REPAIRS, [c.call.outcome.value for c in calls]
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and (run.state, run.attempt) == ("dead", 1), run
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "failed"
    assert isinstance(conversation.metadata, dict) and conversation.metadata["failure"]["reason"]
    assert set((await memory_counts(pool, user_id)).values()) == {0}
