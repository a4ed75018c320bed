"""How many Postgres and Redis round trips one ingestion's handler costs: a budget, so a change that adds one to every
ingestion is seen here rather than in a benchmark weeks later.

Ingestion throughput is bound by the worker's CPU once the LLM answers fast (bench/bench_ingest.py), and each round
trip costs the worker and Postgres about as much as the work it carries. Counted by wrapping asyncpg's and
redis-py's send paths while the ingest handler runs (a context variable, which the tasks it starts inherit); the
runtime's own statements around it (ledger, claim) are bench_dispatch's business.
"""

from __future__ import annotations

import contextvars
import dataclasses
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import asyncpg
import asyncpg.connection
import pytest
import redis.asyncio as aioredis
import redis.asyncio.client

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from jobs.ingestion import INGEST, IngestArgs
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE
from store.repos import conversations, users
from tests.jobs.conftest import BurstRunner
from tests.jobs.testjobs import replacing

SAMPLE_ANSWER: dict[str, Any] = load_sample_answers()[0].answer

POSTGRES_BUDGET = 14
"""A user's first conversation: reading it, the budget check, the 'processing' mark and the call log (4), then one
transaction: BEGIN, the conversation's lock, the concepts' locks, lookup and insert, pending prompts for the package,
one statement for the memory units, cards, growth events, relationships, the user's row and the conversation's
status, the salience inputs read, the salience and outbox rows written, COMMIT (10). It was 22 before a conversation
with nothing recalled stopped reading the revisions it made before, and concepts looked up stopped being checked for
merges when none of them is merged; 20 before the independent writes went together (store/repos/_base.py,
apply_together)."""
REDIS_BUDGET = 2
"""The turn context, and one pipeline asking whether each store's dispatcher will see the commit (was one each)."""

_counting: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("counting", default=None)


pytestmark = pytest.mark.scripted_llm()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement asyncpg sends and every command or pipeline redis-py sends, counted while a handler runs."""

    def wrap(owner: type, name: str, kind: str, *, only_without_arguments: bool = False) -> None:
        original = getattr(owner, name)

        async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts = _counting.get()
            if counts is not None and not (only_without_arguments and len(args) > 1):
                counts[kind] += 1
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(owner, name, counting)

    # fetch, fetchrow, fetchval and execute with arguments go through _execute; execute without arguments (BEGIN,
    # COMMIT) is sent with the simple protocol, executemany on its own
    wrap(asyncpg.connection.Connection, "_execute", "postgres")
    wrap(asyncpg.connection.Connection, "execute", "postgres", only_without_arguments=True)
    wrap(asyncpg.connection.Connection, "executemany", "postgres")
    wrap(redis.asyncio.client.Redis, "execute_command", "redis")
    wrap(redis.asyncio.client.Pipeline, "execute", "redis")


async def test_a_first_conversation_is_ingested_within_the_round_trip_budget(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    counted: None,
) -> None:
    counts: list[Counter[str]] = []

    """Measured on the second of two users' first conversations: the first one's commit queued the stores'
    dispatchers (on the batch queue, which this worker does not serve), as they usually are by the time of an
    ingestion in a busy deployment; queueing one costs its own round trips, once."""

    async def handler(ctx: JobContext, args: IngestArgs) -> Mapping[str, Any] | None:
        mine: Counter[str] = Counter()
        counts.append(mine)
        token = _counting.set(mine)  # reset below: a variable set in an awaited coroutine outlives it in the task
        try:
            return await INGEST.handler(ctx, args)
        finally:
            _counting.reset(token)

    run_burst.jobs = replacing(run_burst.jobs, dataclasses.replace(INGEST, handler=handler))
    for name in ("ana", "ben"):
        user = await users.create_user(pool, str(uuid.uuid4()), email=f"{name}@example.com")
        conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
        for role, content in (("assistant", "How was the run?"), ("user", "Ran 10k without stopping, Dani cheered")):
            await conversations.add_message(pool, user.user_id, conversation.id, role=role, content=content)
        llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
        await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
        await run_burst(queues=(INTERACTIVE,))
        written = await conversations.get_conversation(pool, user.user_id, conversation.id)
        assert written is not None and written.status == "processed"

    assert len(counts) == 2
    second = counts[1]
    assert second["postgres"] <= POSTGRES_BUDGET, second
    assert second["redis"] <= REDIS_BUDGET, second
    assert second["postgres"] >= POSTGRES_BUDGET - 2, f"{second}: fewer than budgeted; lower the budget"
