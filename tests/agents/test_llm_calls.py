"""runtime.llm_calls on real Postgres: every attempt recorded through the LLM client, the budget read from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from agents.ingestion import IngestionAgent
from agents.llm import LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.errors import DeferredError
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from prompts import load_prompt
from store.llm_calls import (
    PostgresCallLog,
    insert_llm_call,
    list_llm_calls,
    tokens_used_since,
)
from tests.agents.conftest import FAST
from tests.agents.test_ingestion import answer, make_input


def record(user_id: str, outcome: CallOutcome = CallOutcome.OK, tokens: int = 10) -> LLMCallRecord:
    return LLMCallRecord(
        user_id=user_id,
        job_id="job-1",
        agent="probe",
        model="m",
        endpoint="http://127.0.0.1:1/v1",
        prompt_name="probe",
        prompt_version="0123456789ab",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        latency_ms=5,
        outcome=outcome,
        error=None if outcome is CallOutcome.OK else "boom",
    )


async def test_every_attempt_of_an_ingestion_is_recorded(pool: asyncpg.Pool, server: ScriptedLLMServer) -> None:
    server.enqueue(
        ScriptedReply.error(429, "slow down", retry_after="0"),
        ScriptedReply.text("not json"),
        ScriptedReply.json(answer()),
    )
    async with LLMClient(base_url=server.base_url, api_key="k", call_log=PostgresCallLog(pool), **FAST) as llm:
        agent = IngestionAgent(llm, model="test-model", input_token_budget=4000)
        result = await agent.run(make_input([("user", "I ran 10k today.")]), job_id="ingest:conv-1")

    calls = await list_llm_calls(pool, "user-1")
    assert [(c.call.purpose, c.call.outcome, c.call.attempt) for c in calls] == [
        (CallPurpose.ANSWER, CallOutcome.RATE_LIMITED, 1),
        (CallPurpose.ANSWER, CallOutcome.INVALID_JSON, 2),
        (CallPurpose.REPAIR, CallOutcome.OK, 1),
    ]
    version = load_prompt("ingestion").version
    for stored in calls:
        call = stored.call
        assert (call.user_id, call.job_id, call.agent, call.model) == (
            "user-1",
            "ingest:conv-1",
            "ingestion",
            "test-model",
        )
        assert (call.prompt_name, call.prompt_version, call.endpoint) == ("ingestion", version, server.base_url)
        assert call.latency_ms >= 0 and stored.created_at.tzinfo is not None
    assert calls[0].call.prompt_tokens == 0 and "429" in (calls[0].call.error or "")
    assert calls[1].call.error is not None and "not valid JSON" in calls[1].call.error
    assert all(c.call.prompt_tokens > 0 and c.call.completion_tokens > 0 for c in calls[1:])
    assert result.llm_calls == 3
    assert result.prompt_tokens == sum(c.call.prompt_tokens for c in calls)
    assert result.completion_tokens == sum(c.call.completion_tokens for c in calls)
    assert await tokens_used_since(pool, "user-1", datetime.now(UTC) - timedelta(hours=1)) == result.usage.total_tokens


async def test_budget_is_summed_from_the_table(pool: asyncpg.Pool, server: ScriptedLLMServer) -> None:
    await insert_llm_call(pool, record("user-1", tokens=300))  # 600 tokens today
    await insert_llm_call(pool, record("user-2", tokens=5000))
    old = await insert_llm_call(pool, record("user-1", tokens=5000))
    await pool.execute("UPDATE runtime.llm_calls SET created_at = now() - interval '2 days' WHERE id = $1", old)
    server.enqueue(ScriptedReply.json(answer()))
    async with LLMClient(
        base_url=server.base_url, api_key="k", call_log=PostgresCallLog(pool), daily_token_budget=600, **FAST
    ) as llm:
        agent = IngestionAgent(llm, model="test-model", input_token_budget=4000)
        with pytest.raises(DeferredError, match="user-1 has used 600 LLM tokens today") as caught:
            await agent.run(make_input([("user", "hello")]))
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        assert caught.value.until == datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
        assert server.requests == []

        await pool.execute(
            "DELETE FROM runtime.llm_calls WHERE user_id = 'user-1' AND created_at > now() - interval '1 day'"
        )
        result = await agent.run(make_input([("user", "hello")]))  # only yesterday's tokens left: allowed
        assert result.llm_calls == 1


async def test_every_outcome_is_storable(pool: asyncpg.Pool) -> None:
    """The CHECK constraint (0003_llm_calls.sql, widened by 0014) and the CallOutcome enum list the same values."""
    for outcome in CallOutcome:
        await insert_llm_call(pool, record("user-1", outcome))
    stored = await list_llm_calls(pool, "user-1")
    assert [c.call.outcome for c in stored] == list(CallOutcome)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO runtime.llm_calls (user_id, agent, model, endpoint, prompt_name, prompt_version, purpose, "
            "response_format, attempt, latency_ms, outcome) VALUES ('u', 'a', 'm', 'e', 'p', 'v', 'answer', "
            "'json_schema', 1, 1, 'exploded')"
        )


async def test_queries_are_scoped_to_one_user(pool: asyncpg.Pool) -> None:
    await insert_llm_call(pool, record("user-1"))
    await insert_llm_call(pool, record("user-2"))
    await insert_llm_call(pool, record("user-2", CallOutcome.TIMEOUT))
    assert [c.call.user_id for c in await list_llm_calls(pool, "user-1")] == ["user-1"]
    assert len(await list_llm_calls(pool, "user-2", job_id="job-1")) == 2
    assert await list_llm_calls(pool, "user-2", job_id="job-2") == []
    assert len(await list_llm_calls(pool, "user-1")) == 1


async def test_the_budget_query_uses_the_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")  # a tiny table would otherwise always be scanned
        rows = await conn.fetch(
            "EXPLAIN (FORMAT TEXT) SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM runtime.llm_calls "
            "WHERE user_id = $1 AND created_at >= $2",
            "user-1",
            datetime.now(UTC),
        )
        await conn.execute("RESET enable_seqscan")
    assert "llm_calls_user_created_idx" in "\n".join(row[0] for row in rows)
