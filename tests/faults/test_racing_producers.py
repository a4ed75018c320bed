"""Racing producers: many concurrent enqueues of one job id, from Python (`jobs.runtime.enqueue.enqueue`, each on its
own Postgres and Redis connections) and from the raw-record Lua route docs/jobs.md gives other languages, with no worker
running. One run must be queued and never marked lost; the worker then makes one LLM call per conversation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, job_key, queue_key
from store.postgres import connect
from tests.faults.conftest import check_exactly_once, documented_enqueue_script, raw_record, seed_backlog
from tests.jobs.conftest import BurstRunner
from tests.jobs.test_ingest_job import pytestmark  # noqa: F401  (its scripted LLM and settings)

ROUNDS = 40
PYTHON_PRODUCERS = 6
LUA_PRODUCERS = 2
MIXED_EVERY = 4
"""Every 4th round the Lua producers race the Python ones; in the others Python producers race each other alone."""


@pytest.fixture
async def producer_connections(
    database_url: str, redis_url: str
) -> AsyncIterator[list[tuple[asyncpg.Connection, aioredis.Redis]]]:
    """One Postgres connection and one Redis client per producer, as separate processes would have."""
    pairs = [(await connect(database_url), aioredis.Redis.from_url(redis_url)) for _ in range(PYTHON_PRODUCERS)]
    try:
        yield pairs
    finally:
        for conn, client in pairs:
            await conn.close()
            await client.aclose()


async def test_racing_enqueues_of_one_id_queue_one_run_and_make_one_llm_call(
    pool: asyncpg.Pool,
    redis_url: str,
    redis_client: aioredis.Redis,
    producer_connections: list[tuple[asyncpg.Connection, aioredis.Redis]],
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
) -> None:
    script = documented_enqueue_script()
    lua_clients = [aioredis.Redis.from_url(redis_url) for _ in range(LUA_PRODUCERS)]
    reference = (await seed_backlog(pool, 1, 1, "race-reference"))[0]
    backlog = await seed_backlog(pool, 2, ROUNDS // 2, "race")
    problems: list[str] = []
    try:
        for round_number, (_, conversation_id) in enumerate(backlog):
            job_id = f"ingest:{conversation_id}"
            args = {"conversation_id": conversation_id}

            async def python(conn: asyncpg.Connection, client: aioredis.Redis, args: dict[str, str] = args) -> bool:
                return (await enqueue(client, conn, INGEST, args)).enqueued

            async def lua(client: aioredis.Redis, job_id: str = job_id, conversation_id: str = conversation_id) -> bool:
                now_ms = int(time.time() * 1000)
                added = await client.eval(  # type: ignore[misc]
                    script,
                    2,
                    job_key(job_id),
                    queue_key(INTERACTIVE),
                    raw_record(conversation_id),
                    "86400000",
                    str(now_ms),
                    job_id,
                )
                return bool(added)

            outcomes = await asyncio.gather(
                *(python(conn, client) for conn, client in producer_connections),
                *(lua(c) for c in lua_clients if round_number % MIXED_EVERY == 0),
            )
            runs = await pool.fetch("SELECT state, error_class FROM runtime.job_runs WHERE job_id = $1", job_id)
            if sum(outcomes) != 1:
                problems.append(f"{job_id}: {sum(outcomes)} producers were told they enqueued it")
            if any(r["state"] == "dead" for r in runs) or len(runs) > 1:
                problems.append(f"{job_id}: ledger rows {[tuple(r) for r in runs]} while the job sits queued")
            if await redis_client.zscore(queue_key(INTERACTIVE), job_id) is None:
                problems.append(f"{job_id}: not in the queue")
        assert not problems, "\n".join(problems)

        await enqueue(redis_client, pool, INGEST, {"conversation_id": reference[1]})
        await run_burst()
        tally = await check_exactly_once(pool, backlog, reference, max_llm_calls=1)
        assert len(llm_server.chat_requests) == len(backlog) + 1
        producers = PYTHON_PRODUCERS * len(backlog) + LUA_PRODUCERS * len(backlog[::MIXED_EVERY])
        print(tally.line("racing-producers", enqueues=producers, llm_calls=len(llm_server.chat_requests)))
    finally:
        for client in lua_clients:
            await client.aclose()
