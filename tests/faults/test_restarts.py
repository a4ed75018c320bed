"""Postgres and Redis restarted mid-burst: each on a server of the test's own, stopped for several seconds while
worker processes work off a backlog of ingestions. Nothing may be lost or doubled, and the workers ride it out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer
from store.postgres import create_pool
from tests.faults.conftest import (
    Fleet,
    PrivatePostgres,
    PrivateRedis,
    check_exactly_once,
    enqueue_ingestions,
    ingest_reference,
    llm_env,
    processed_count,
    seed_backlog,
    wait_processed,
    worker_group,
)
from tests.jobs.conftest import wait_for_workers

BACKLOG_USERS = 3
PER_USER = 15
OUTAGE_S = 6.0
SLOTS = 2 * 4
"""Two workers with four jobs at once each: an outage can cost at most the LLM calls in flight, twice."""


async def test_postgres_restart_mid_burst_loses_and_doubles_nothing(
    private_postgres: PrivatePostgres,
    redis_url: str,
    redis_client: aioredis.Redis,
    fault_llm: ScriptedLLMServer,
    tmp_path: Path,
) -> None:
    database_url = private_postgres.database_url
    group = worker_group(database_url, redis_url, tmp_path, llm_env(fault_llm))
    pool = await create_pool(database_url, min_size=1, max_size=3)
    try:
        fleet = Fleet(group, 2, "--queue", "interactive", "--concurrency", "4")
        await wait_for_workers(redis_client, 2)
        reference = await ingest_reference(pool, redis_client, fleet)
        backlog = await seed_backlog(pool, BACKLOG_USERS, PER_USER, "pg-restart")
        ids = [c for _, c in backlog]
        await enqueue_ingestions(redis_client, pool, ids)
        await wait_processed(pool, ids, fleet, at_least=5)
        assert await processed_count(pool, ids) < len(ids), "the burst ended before the outage began"

        await pool.close()
        private_postgres.stop()
        await asyncio.sleep(OUTAGE_S)
        private_postgres.start()

        pool = await create_pool(database_url, min_size=1, max_size=3)
        await wait_processed(pool, ids, fleet)
        tally = await check_exactly_once(pool, backlog, reference)
        assert [p.poll() for p in fleet.live] == [None, None], fleet.dead()
        assert len(fault_llm.chat_requests) <= len(ids) + 1 + 2 * SLOTS, len(fault_llm.chat_requests)
        print(tally.line("postgres-restart", restarts=1, outage_s=int(OUTAGE_S)))
    finally:
        group.stop_all()
        await pool.close()


async def test_redis_restart_mid_burst_loses_and_doubles_nothing(
    database_url: str,
    pool: asyncpg.Pool,
    private_redis: PrivateRedis,
    fault_llm: ScriptedLLMServer,
    tmp_path: Path,
) -> None:
    group = worker_group(database_url, private_redis.url, tmp_path, llm_env(fault_llm))
    redis = aioredis.Redis.from_url(private_redis.url)
    try:
        fleet = Fleet(group, 2, "--queue", "interactive", "--concurrency", "4")
        await wait_for_workers(redis, 2)
        reference = await ingest_reference(pool, redis, fleet)
        backlog = await seed_backlog(pool, BACKLOG_USERS, PER_USER, "redis-restart")
        ids = [c for _, c in backlog]
        await enqueue_ingestions(redis, pool, ids)
        await wait_processed(pool, ids, fleet, at_least=5)
        assert await processed_count(pool, ids) < len(ids), "the burst ended before the outage began"

        await redis.aclose()
        private_redis.stop()
        await asyncio.sleep(OUTAGE_S)
        assert not fleet.dead(), "a worker exited during a Redis outage shorter than its tolerance"
        private_redis.start()

        redis = aioredis.Redis.from_url(private_redis.url)
        await wait_processed(pool, ids, fleet)
        tally = await check_exactly_once(pool, backlog, reference)
        assert [p.poll() for p in fleet.live] == [None, None], fleet.dead()
        assert len(fault_llm.chat_requests) <= len(ids) + 1 + 2 * SLOTS, len(fault_llm.chat_requests)
        print(tally.line("redis-restart", restarts=1, outage_s=int(OUTAGE_S)))
    finally:
        group.stop_all()
        await redis.aclose()
