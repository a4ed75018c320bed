"""The cached part of a prompt, read from each provider's usage shape and recorded with the call: in the answer's
usage, in the call log and in runtime.llm_calls, never more than the prompt and never counted twice by the budget."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from agents.llm import InMemoryCallLog, LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from store.llm_calls import PostgresCallLog, insert_llm_call, list_llm_calls, tokens_used_since
from tests.agents.conftest import FAST
from tests.agents.test_llm import CONTEXT, GOOD, PROMPT, Verdict


def completion(usage: Any) -> str:
    """A chat completion answering GOOD, with `usage` as a server sends it."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": json.dumps(GOOD)}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    return json.dumps(body)


@pytest.mark.parametrize(
    ("usage", "cached"),
    [
        # OpenAI (also xAI, Groq, Azure OpenAI, vLLM): part of prompt_tokens
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1536}}, 1536),
        # DeepSeek: hit + miss = prompt_tokens
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_cache_hit_tokens": 1280}, 1280),
        ({"prompt_tokens": 2000, "completion_tokens": 9}, 0),  # a server that caches nothing (Ollama)
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": None}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": None}}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"audio_tokens": 0}}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": "n/a"}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": "12"}}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": -5}}, 0),
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_cache_hit_tokens": [1]}, 0),
        # more cached than prompt (a broken proxy): at most the prompt, so the row is still written
        ({"prompt_tokens": 2000, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 9999}}, 2000),
        ({"prompt_tokens": None, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 64}}, 0),
    ],
)
async def test_cached_tokens_are_read_from_every_provider_shape_and_never_stop_a_call(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, usage: dict[str, Any], cached: int
) -> None:
    server.enqueue(ScriptedReply.garbled(completion(usage)))
    answer = await client.complete(PROMPT, Verdict, model="test-model", context=CONTEXT)
    assert answer.value == Verdict(**GOOD)
    ((_, record),) = call_log.records
    assert record.cached_tokens == answer.usage.cached_tokens == cached
    assert record.prompt_tokens == (usage["prompt_tokens"] or 0)


async def test_a_repair_sums_the_cached_tokens_of_both_calls(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    usage = {"prompt_tokens": 1500, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1024}}
    server.enqueue(ScriptedReply.text('{"mood": '), ScriptedReply.garbled(completion(usage)))
    answer = await client.complete(PROMPT, Verdict, model="test-model", context=CONTEXT)
    assert [record.cached_tokens for _, record in call_log.records] == [0, 1024]  # the scripted server's: too short
    assert answer.usage.cached_tokens == 1024 and answer.usage.calls == 2


async def test_cached_tokens_are_stored_and_the_budget_counts_them_once_as_prompt(
    pool: asyncpg.Pool, server: ScriptedLLMServer
) -> None:
    """Through Postgres: the column holds the count, and the daily budget sums prompt + completion as before (the
    cached tokens are part of the prompt, counted once at full weight)."""
    usage = {"prompt_tokens": 3000, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 2048}}
    server.enqueue(ScriptedReply.garbled(completion(usage)))
    async with LLMClient(base_url=server.base_url, api_key="k", call_log=PostgresCallLog(pool), **FAST) as client:
        await client.complete(PROMPT, Verdict, model="test-model", context=CONTEXT)
    (stored,) = await list_llm_calls(pool, CONTEXT.user_id)
    assert (stored.call.prompt_tokens, stored.call.cached_tokens, stored.call.completion_tokens) == (3000, 2048, 40)
    assert await tokens_used_since(pool, CONTEXT.user_id, stored.created_at) == 3040


async def test_the_table_refuses_more_cached_than_prompt_tokens(pool: asyncpg.Pool) -> None:
    """The client never writes such a row (it caps the count); the constraint keeps any other writer honest."""
    record = LLMCallRecord(
        user_id="user-x",
        job_id=None,
        agent="probe",
        model="test-model",
        endpoint="http://127.0.0.1:1/v1",
        prompt_name="probe",
        prompt_version="v",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=100,
        completion_tokens=0,
        latency_ms=1,
        outcome=CallOutcome.OK,
        error=None,
        cached_tokens=101,
    )
    with pytest.raises(asyncpg.CheckViolationError, match="llm_calls_cached_tokens_check"):
        await insert_llm_call(pool, record)
    await insert_llm_call(pool, replace(record, cached_tokens=100))
    assert [s.call.cached_tokens for s in await list_llm_calls(pool, "user-x")] == [100]
