"""Racing producers of one job id (issue 10 item 7): the winner's run stays queued, never marked LostJob."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import job_key
from store import ledger
from store.postgres import create_pool

ROUNDS = 40


@pytest.fixture
async def second_producer(database_url: str, redis_url: str) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis]]:
    """Another process's connections: its own Postgres pool and Redis client."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield pool, client
    finally:
        await pool.close()
        await client.aclose()


async def test_two_producers_of_one_id_enqueue_it_once_and_leave_it_queued(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, second_producer: tuple[asyncpg.Pool, aioredis.Redis]
) -> None:
    other_pool, other_redis = second_producer
    for round_ in range(ROUNDS):
        args = {"mark": f"race-{round_}"}
        job_id = f"race:{round_}"
        first, second = await asyncio.gather(
            enqueue(redis_client, pool, ECHO, args, job_id=job_id),
            enqueue(other_redis, other_pool, ECHO, args, job_id=job_id),
        )

        assert [first.enqueued, second.enqueued].count(True) == 1, round_
        runs = await ledger.runs_of(pool, job_id)
        assert [(r.state, r.error_class) for r in runs] == [("queued", None)], (round_, runs)
        assert await redis_client.exists(job_key(job_id)) == 1
