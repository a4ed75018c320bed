"""The runtime end to end with an in-process worker: ledger states, retries, dead letters, timeouts, deferrals."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import arq.worker
import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO
from jobs.runtime.attempt import run_attempt
from jobs.runtime.enqueue import NotRetryableError, enqueue, retry_dead
from jobs.runtime.keys import job_key, queue_key, retry_key
from jobs.runtime.resources import WorkerResources
from store import ledger
from tests.jobs.conftest import BurstRunner
from tests.jobs.testjobs import FIXABLE, LEASE_LOST, SLOW, TEST_JOBS


async def test_enqueue_run_ledger(pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"mark": "ok"})

    await run_burst()

    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 1
    assert run.result == {"attempt": 1, "slept_s": 0.0}
    assert run.started_at is not None and run.finished_at is not None and run.duration_ms is not None
    assert run.worker_id and run.error is None
    assert await redis_client.exists(job_key(result.job_id)) == 0  # no kept arq result blocks a re-enqueue
    assert await redis_client.smembers("orrery:diag:ok:finished") == {result.job_id.encode()}  # type: ignore[misc]


async def test_a_job_whose_lease_lapses_while_it_runs_is_not_started_again_by_its_own_worker(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """A worker whose event loop stalls past the lease (a slow traceback render under load did it) finds its own
    running job due and unleased. It must keep the one run it has (the claim's lease is the running job's again), not
    start a second attempt beside it: that ran every step twice and broke arq's task bookkeeping (KeyError)."""
    result = await enqueue(redis_client, pool, LEASE_LOST, {"sleep_s": 0.5, "mark": "lapse"})

    await run_burst()

    assert await redis_client.get("test:lapse:attempts") == b"1"
    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 1


async def test_transient_error_is_retried_with_backoff(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"fail_mode": "transient", "fail_attempts": 2})

    await run_burst()

    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 3
    assert run.result == {"attempt": 3, "slept_s": 0.0}
    assert run.started_at is not None and run.enqueued_at is not None
    # backoff 0.2 s base: ≥ 0.1 s before try 2 and ≥ 0.2 s before try 3 (equal jitter keeps half of each)
    assert (run.started_at - run.enqueued_at).total_seconds() >= 0.3


async def test_exhausted_tries_become_a_dead_letter(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"fail_mode": "transient"})

    await run_burst()

    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and run.state == "dead" and run.attempt == 3
    assert run.error_class == "TransientError" and run.error is not None
    assert "gave up after 3 of 3 tries" in run.error
    assert [r.job_id for r in await ledger.dead_letters(pool)] == [result.job_id]


async def test_permanent_error_is_dead_at_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"fail_mode": "permanent"})

    await run_burst()

    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and (run.state, run.attempt, run.error_class) == ("dead", 1, "PermanentError")
    assert run.error == "diag.echo failing on purpose (fail_mode=permanent, attempt 1)"


async def test_timeout_is_retried(pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner) -> None:
    result = await enqueue(redis_client, pool, SLOW, {"sleep_s": 5, "mark": "t"})

    await run_burst()

    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 2
    assert int(await redis_client.get("test:t:attempts")) == 2


async def test_deferred_job_is_rescheduled_without_using_an_attempt(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"fail_mode": "deferred", "defer_s": 600})
    await redis_client.incr(retry_key(result.job_id))  # what arq does before it calls the job

    with pytest.raises(arq.worker.Retry) as retry:
        await run_attempt(ECHO, resources, result.job_id, 1, {"fail_mode": "deferred", "defer_s": 600})

    assert retry.value.defer_score is not None and 599_000 <= retry.value.defer_score <= 600_000
    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and (run.state, run.attempt, run.error_class) == ("queued", 1, "DeferredError")
    assert (run.run_at - datetime.now(UTC)).total_seconds() > 590
    assert int(await redis_client.get(retry_key(result.job_id))) == 0  # the next run is attempt 1 again
    assert await redis_client.pttl(job_key(result.job_id)) > 600_000  # the record outlives the deferral


async def test_invalid_arguments_from_a_foreign_producer_are_dead_at_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """A producer writing straight to Redis (the TypeScript web app) gets the same validation, as a dead letter."""
    record = {"f": "diag.echo", "k": {"sleep_s": "later"}}
    await redis_client.set(job_key("ts-1"), json.dumps(record), px=60_000)
    await redis_client.zadd(queue_key("interactive"), {"ts-1": time.time() * 1000})

    await run_burst()

    run = await ledger.latest_run(pool, "ts-1")
    assert run is not None and (run.state, run.attempt, run.error_class) == ("dead", 1, "ValidationError")
    assert run.error is not None and run.error.startswith("invalid arguments: sleep_s:")


async def test_foreign_producer_job_runs_and_gets_a_ledger_row(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    await redis_client.set(job_key("ts-2"), json.dumps({"f": "diag.echo", "k": {}}), px=60_000)
    await redis_client.zadd(queue_key("interactive"), {"ts-2": time.time() * 1000})
    await redis_client.set(job_key("ts-3"), json.dumps({"f": "no.such.job", "k": {"x": 1}}), px=60_000)
    await redis_client.zadd(queue_key("interactive"), {"ts-3": time.time() * 1000})

    await run_burst()

    ok = await ledger.latest_run(pool, "ts-2")
    assert ok is not None and ok.state == "succeeded" and ok.job_name == "diag.echo"
    unknown = await ledger.latest_run(pool, "ts-3")
    assert unknown is not None and (unknown.state, unknown.error_class) == ("dead", "NotRunnable")
    assert unknown.job_name == "no.such.job" and unknown.args == {"x": 1}
    assert unknown.error is not None and "no.such.job" in unknown.error


async def test_dead_letter_is_revived_by_retry(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    await redis_client.set("test:order-7:broken", "1")
    first = await enqueue(redis_client, pool, FIXABLE, {"mark": "order-7"})
    await run_burst()
    dead = await ledger.latest_run(pool, "fixable:order-7")
    assert dead is not None and (dead.state, dead.attempt, dead.error) == ("dead", 1, "order-7 is broken")

    busy = await enqueue(redis_client, pool, ECHO, {})
    with pytest.raises(NotRetryableError, match="is queued, not dead"):
        await retry_dead(redis_client, pool, TEST_JOBS, busy.job_id)
    await redis_client.delete("test:order-7:broken")  # the operator fixes the cause
    revived = await retry_dead(redis_client, pool, TEST_JOBS, "fixable:order-7")
    await run_burst()

    assert revived.enqueued and revived.job_id == first.job_id and revived.run_id != first.run_id
    runs = await ledger.runs_of(pool, "fixable:order-7")
    args = {"sleep_s": 0.0, "mark": "order-7"}
    assert [(r.state, r.args) for r in runs] == [("succeeded", args), ("dead", args)]
    assert await ledger.dead_letters(pool) == []  # a revived job is no longer listed as a dead letter
