"""runtime.llm_calls: one row per HTTP attempt at an LLM (see 0003_llm_calls.sql). Every query takes a user id, but
one: an operator's look at one job's calls (`run.py jobs show`), which the job id scopes.

PostgresCallLog is the production implementation of the LLM layer's CallLog port (agents/llm/): the LLM client
writes through it and reads the user's token usage from it for the daily budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from store.postgres import Executor

_COLUMNS = (
    "user_id, job_id, agent, model, endpoint, prompt_name, prompt_version, purpose, response_format, attempt, "
    "prompt_tokens, completion_tokens, latency_ms, outcome, error, cached_tokens"
)


@dataclass(frozen=True)
class StoredLLMCall:
    """A row of runtime.llm_calls."""

    id: int
    created_at: datetime
    call: LLMCallRecord


async def insert_llm_call(executor: Executor, call: LLMCallRecord) -> int:
    """Store one call record; returns its id."""
    call_id: int = await executor.fetchval(
        f"INSERT INTO runtime.llm_calls ({_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        call.user_id,
        call.job_id,
        call.agent,
        call.model,
        call.endpoint,
        call.prompt_name,
        call.prompt_version,
        call.purpose.value,
        call.response_format.value,
        call.attempt,
        call.prompt_tokens,
        call.completion_tokens,
        call.latency_ms,
        call.outcome.value,
        call.error,
        call.cached_tokens,
    )
    return call_id


async def tokens_used_since(executor: Executor, user_id: str, since: datetime) -> int:
    """Prompt + completion tokens the user's calls used from `since` on (the daily budget's sum). Cached prompt
    tokens count in full, as part of the prompt: the budget bounds the work a user can cause, whatever the provider
    happened to keep in its cache (docs/llm.md)."""
    total = await executor.fetchval(
        "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM runtime.llm_calls "
        "WHERE user_id = $1 AND created_at >= $2",
        user_id,
        since,
    )
    return int(total)


async def list_llm_calls(
    executor: Executor, user_id: str, *, job_id: str | None = None, limit: int = 1000
) -> list[StoredLLMCall]:
    """The user's calls, oldest first; only one job's when `job_id` is given."""
    rows = await executor.fetch(
        f"SELECT id, created_at, {_COLUMNS} FROM runtime.llm_calls "
        "WHERE user_id = $1 AND ($2::text IS NULL OR job_id = $2) ORDER BY created_at, id LIMIT $3",
        user_id,
        job_id,
        limit,
    )
    return [_stored(row) for row in rows]


async def list_job_llm_calls(executor: Executor, job_id: str, *, limit: int = 1000) -> list[StoredLLMCall]:
    """One job's calls, oldest first, every run of its id (an operator's view: `run.py jobs show`)."""
    rows = await executor.fetch(
        f"SELECT id, created_at, {_COLUMNS} FROM runtime.llm_calls WHERE job_id = $1 ORDER BY created_at, id LIMIT $2",
        job_id,
        limit,
    )
    return [_stored(row) for row in rows]


def _stored(row: asyncpg.Record) -> StoredLLMCall:
    data: dict[str, Any] = dict(row)
    call = LLMCallRecord(
        user_id=data["user_id"],
        job_id=data["job_id"],
        agent=data["agent"],
        model=data["model"],
        endpoint=data["endpoint"],
        prompt_name=data["prompt_name"],
        prompt_version=data["prompt_version"],
        purpose=CallPurpose(data["purpose"]),
        response_format=ResponseFormatMode(data["response_format"]),
        attempt=data["attempt"],
        prompt_tokens=data["prompt_tokens"],
        completion_tokens=data["completion_tokens"],
        latency_ms=data["latency_ms"],
        outcome=CallOutcome(data["outcome"]),
        error=data["error"],
        cached_tokens=data["cached_tokens"],
    )
    return StoredLLMCall(id=data["id"], created_at=data["created_at"], call=call)


class PostgresCallLog:
    """The LLM layer's CallLog on a pool: each record is its own statement, committed at once.

    Why outside the job's transaction: a call that was paid for stays recorded even when the job's write fails.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, call: LLMCallRecord) -> None:
        await insert_llm_call(self._pool, call)

    async def tokens_used(self, user_id: str, since: datetime) -> int:
        return await tokens_used_since(self._pool, user_id, since)
