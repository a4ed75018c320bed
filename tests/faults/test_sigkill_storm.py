"""SIGKILL storm: worker processes killed at random every half second to a second while they work off a backlog of
ingestions from several users, each replaced at once. Every conversation must end processed exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer
from tests.faults.conftest import (
    Fleet,
    check_exactly_once,
    enqueue_ingestions,
    ingest_reference,
    llm_env,
    processed_count,
    sample_llm,
    seed_backlog,
    wait_processed,
    worker_group,
)
from tests.jobs.conftest import wait_for_workers

USERS = 4
PER_USER = 50
WORKERS = 3
CONCURRENCY = 2
LLM_THINK_S = 0.3
"""With 2 jobs at once per worker and a 0.3 s LLM, the backlog takes long enough for a real storm."""
MAX_KILLS = 30
STORM_S = 40.0
"""Kills stop at MAX_KILLS or after STORM_S; the backlog then has a bounded time to finish."""


async def test_sigkill_storm_processes_every_conversation_exactly_once(
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    with sample_llm(LLM_THINK_S) as llm:
        await _storm(database_url, redis_url, pool, redis_client, llm, tmp_path)


async def _storm(
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    llm: ScriptedLLMServer,
    tmp_path: Path,
) -> None:
    group = worker_group(database_url, redis_url, tmp_path, llm_env(llm))
    try:
        fleet = Fleet(group, WORKERS, "--queue", "interactive", "--concurrency", str(CONCURRENCY))
        await wait_for_workers(redis_client, WORKERS)
        reference = await ingest_reference(pool, redis_client, fleet)
        backlog = await seed_backlog(pool, USERS, PER_USER, "storm")
        ids = [c for _, c in backlog]
        requests_before = len(llm.chat_requests)
        await enqueue_ingestions(redis_client, pool, ids)

        rng = random.Random(20260110)
        storm_end = time.monotonic() + STORM_S
        while fleet.kills < MAX_KILLS and time.monotonic() < storm_end:
            await asyncio.sleep(rng.uniform(0.5, 1.0))
            if await processed_count(pool, ids) == len(ids):
                break
            fleet.kill_random(rng)
        await wait_processed(pool, ids, fleet)

        tally = await check_exactly_once(pool, backlog, reference)
        llm_requests = len(llm.chat_requests) - requests_before
        # a kill can waste at most the calls in flight on the killed worker
        assert len(ids) <= llm_requests <= len(ids) + CONCURRENCY * fleet.kills, (llm_requests, fleet.kills)
        assert fleet.kills >= 5, f"only {fleet.kills} kills: the storm ended before it began"
        assert not fleet.dead(), fleet.dead()
        print(tally.line("sigkill-storm", kills=fleet.kills, llm_calls=llm_requests))
    finally:
        group.stop_all()
