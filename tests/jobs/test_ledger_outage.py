"""Postgres away mid-job (issue 10 items 4 and 5): no job is lost and no try is spent because Postgres was briefly
gone; a finished outcome the ledger could not take is recorded later, without running the handler again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import arq.worker
import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO, mark_keys
from jobs.runtime.attempt import run_attempt
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, job_key, outcome_key, retry_key
from jobs.runtime.resources import WorkerResources
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import Settings
from store import ledger
from store.postgres import create_pool
from tests.jobs.conftest import wait_until
from tests.jobs.pg_switch import PostgresSwitch
from tests.jobs.testjobs import QUERY, TEST_JOBS


@pytest.fixture
async def switch(database_url: str) -> AsyncIterator[PostgresSwitch]:
    relay = PostgresSwitch(database_url)
    await relay.restore()
    try:
        yield relay
    finally:
        await relay.close()


@pytest.fixture
async def relayed(
    settings: Settings, switch: PostgresSwitch, redis_client: aioredis.Redis
) -> AsyncIterator[WorkerResources]:
    """Worker resources whose Postgres connections all go through the switch."""
    pool = await create_pool(switch.dsn, min_size=1, max_size=3, timeout=2)
    try:
        yield WorkerResources(settings, pool, redis_client, "test-host:2")
    finally:
        pool.terminate()


async def _attempt(redis_client: aioredis.Redis, resources: WorkerResources, job_id: str, raw: dict[str, Any]) -> int:
    """Run one attempt as arq does (the retry counter first); returns the attempt number it ran as."""
    attempt = int(await redis_client.incr(retry_key(job_id)))
    await run_attempt(TEST_JOBS.get(raw.pop("__name")), resources, job_id, attempt, raw)
    return attempt


async def test_a_finished_job_whose_ledger_write_fails_stays_queued_and_is_recorded_later(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, relayed: WorkerResources, switch: PostgresSwitch
) -> None:
    job = await enqueue(redis_client, pool, ECHO, {"sleep_s": 0.5, "mark": "late"})
    raw = {"sleep_s": 0.5, "mark": "late"}

    attempt = asyncio.create_task(_attempt(redis_client, relayed, job.job_id, {"__name": "diag.echo", **raw}))
    await asyncio.sleep(0.2)
    await switch.cut()  # Postgres goes away while the handler sleeps
    with pytest.raises(arq.worker.Retry):
        await attempt

    assert await redis_client.exists(job_key(job.job_id), outcome_key(job.job_id)) == 2  # kept, with its outcome
    assert int(await redis_client.get(retry_key(job.job_id))) == 0  # the try was given back
    await switch.restore()
    assert await _attempt(redis_client, relayed, job.job_id, {"__name": "diag.echo", **raw}) == 1

    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and (run.state, run.attempt, run.result) == ("succeeded", 1, {"attempt": 1, "slept_s": 0.5})
    started, _ = mark_keys("late")
    assert int(await redis_client.get(started)) == 1  # recorded, not run again
    assert await redis_client.exists(outcome_key(job.job_id)) == 0


async def test_postgres_gone_mid_handler_keeps_the_job_and_its_try(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, relayed: WorkerResources, switch: PostgresSwitch
) -> None:
    job = await enqueue(redis_client, pool, QUERY, {})

    attempt = asyncio.create_task(_attempt(redis_client, relayed, job.job_id, {"__name": "test.query"}))
    await asyncio.sleep(0.2)
    await switch.cut()  # the handler's query loses its connection; max_tries=1 would make it dead at once
    with pytest.raises(arq.worker.Retry):
        await attempt
    # a new start while the socket is gone (FileNotFoundError on connect) is not a try either
    with pytest.raises(arq.worker.Retry):
        await _attempt(redis_client, relayed, job.job_id, {"__name": "test.query"})

    assert int(await redis_client.get(retry_key(job.job_id))) == 0
    await switch.restore()
    assert await _attempt(redis_client, relayed, job.job_id, {"__name": "test.query"}) == 1
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and (run.state, run.attempt) == ("succeeded", 1)


async def test_a_worker_rides_out_a_postgres_restart_without_losing_a_job(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings, redis_url: str, switch: PostgresSwitch
) -> None:
    """The issue's measurement scaled down: jobs mid-sleep while Postgres is away for 2 s all end succeeded, each
    handler run once."""
    jobs = [await enqueue(redis_client, pool, ECHO, {"sleep_s": 1.0, "mark": "burst"}) for _ in range(8)]
    options = WorkerOptions(queues=(INTERACTIVE,), concurrency=8, burst=True)
    worker = asyncio.create_task(run_workers(settings, switch.dsn, redis_url, options, TEST_JOBS))
    started, finished = mark_keys("burst")

    async def all_started() -> bool:
        return int(await redis_client.get(started) or 0) == len(jobs)

    await wait_until(all_started)
    await switch.cut()
    await asyncio.sleep(2)
    await switch.restore()
    await asyncio.wait_for(worker, 60)

    states = await ledger.latest_states(pool, [j.job_id for j in jobs])
    assert set(states.values()) == {"succeeded"}, states
    assert int(await redis_client.get(started)) == len(jobs)  # no handler ran twice
    assert await redis_client.scard(finished) == len(jobs)  # type: ignore[misc]
