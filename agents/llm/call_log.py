"""The call log side of the model clients: writing a call's record so that no paid call is lost, the per-user daily
token budget read back from it, and an in-memory CallLog for benchmarks and scripted runs.

The CallLog port itself is in core/llm_records.py (the store implements it: store/llm_calls.py, PostgresCallLog);
the chat client and the embeddings client both write through `write_record`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agents.llm.port import CallContext
from core.errors import BudgetExceededError
from core.llm_records import CallLog, LLMCallRecord


@dataclass
class InMemoryCallLog:
    """A CallLog for benchmarks and scripted runs without a database; keeps records in a list."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    records: list[tuple[datetime, LLMCallRecord]] = field(default_factory=list)

    async def record(self, call: LLMCallRecord) -> None:
        self.records.append((self.clock(), call))

    async def tokens_used(self, user_id: str, since: datetime) -> int:
        return sum(
            r.prompt_tokens + r.completion_tokens for at, r in self.records if r.user_id == user_id and at >= since
        )


async def write_record(call_log: CallLog, record: LLMCallRecord) -> None:
    """Write one call's record, shielded: a cancellation arriving meanwhile (a job timeout) does not lose a paid
    call; the write finishes and the cancellation still reaches the caller."""
    await asyncio.shield(call_log.record(record))


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


async def check_budget(call_log: CallLog, budget: int, context: CallContext, now: datetime) -> None:
    """Raise BudgetExceededError (a DeferredError: the job waits for the next UTC day) when the user's tokens since
    UTC midnight reach `budget`; a budget of 0 means none."""
    if budget <= 0:
        return
    since = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    used = await call_log.tokens_used(context.user_id, since)
    if used >= budget:
        until = next_utc_midnight(now)
        raise BudgetExceededError(
            f"{context.agent}: user {context.user_id} has used {used} LLM tokens today (UTC), over the daily "
            f"budget of {budget} (ORRERY_DAILY_TOKEN_BUDGET); deferred until {until.isoformat()}",
            until=until,
        )
