"""Enqueue: validation before anything is written, the ledger row and the JSON arq record, dedupe by job id."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO
from jobs.maintenance import SWEEP_TIMEOUTS
from jobs.runtime.enqueue import JobArgumentsError, enqueue
from jobs.runtime.keys import job_key, queue_key
from jobs.runtime.registry import UnknownJobError
from store import ledger
from tests.jobs.testjobs import TEST_JOBS


async def test_enqueue_writes_ledger_row_and_json_record(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    result = await enqueue(redis_client, pool, ECHO, {"sleep_s": 0.5}, job_id="echo-1")

    assert result.enqueued and result.job_id == "echo-1" and result.queue == "interactive"
    record = json.loads(await redis_client.get(job_key("echo-1")))
    assert record["f"] == "diag.echo" and record["a"] == [] and record["k"]["sleep_s"] == 0.5
    assert await redis_client.zscore(queue_key("interactive"), "echo-1") is not None
    run = await ledger.latest_run(pool, "echo-1")
    assert run is not None and run.state == "queued" and run.args["sleep_s"] == 0.5 and run.max_tries == 3


async def test_latest_states_reads_each_jobs_newest_run_at_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await enqueue(redis_client, pool, ECHO, {}, job_id="done")
    first = await ledger.latest_run(pool, "done")
    assert first is not None
    await ledger.finish_run(pool, first.id, state="dead", duration_ms=1, error_class="X", error="x")
    retry = await ledger.insert_queued(  # a retry: a newer run of the same id
        pool, job_id="done", job_name="diag.echo", queue="interactive", args={}, max_tries=3, run_at=datetime.now(UTC)
    )
    assert retry is not None
    await enqueue(redis_client, pool, ECHO, {}, job_id="other")

    states = await ledger.latest_states(pool, ["done", "other", "never"])

    assert states == {"done": "queued", "other": "queued"}


async def test_invalid_arguments_enqueue_nothing(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    with pytest.raises(JobArgumentsError) as caught:
        await enqueue(redis_client, pool, ECHO, {"sleep_s": "soon", "colour": "red"}, job_id="bad")

    assert "sleep_s:" in str(caught.value) and "colour: Extra inputs are not permitted" in str(caught.value)
    assert await redis_client.exists(job_key("bad")) == 0
    assert await ledger.latest_run(pool, "bad") is None


async def test_unknown_job_lists_known_names(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    with pytest.raises(UnknownJobError, match=r"unknown job 'nope'; known jobs: .*diag\.echo"):
        await enqueue(redis_client, pool, TEST_JOBS.get("nope"), {})


async def test_same_dedupe_key_twice_is_one_job(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    first = await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})
    second = await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {"limit": 10})

    assert first.job_id == second.job_id == "sweep_timeouts"
    assert first.enqueued and not second.enqueued
    assert len(await ledger.runs_of(pool, "sweep_timeouts")) == 1
    assert await redis_client.zcard(queue_key("interactive")) == 1


async def test_finished_key_can_be_enqueued_again(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    first = await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})
    assert first.run_id is not None
    # what a worker does when the run ends: final ledger state, arq record gone
    await ledger.finish_run(pool, first.run_id, state="succeeded", duration_ms=5)
    await redis_client.delete(job_key("sweep_timeouts"))
    await redis_client.zrem(queue_key("interactive"), "sweep_timeouts")

    again = await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})

    assert again.enqueued and again.run_id != first.run_id
    assert [r.state for r in await ledger.runs_of(pool, "sweep_timeouts")] == ["queued", "succeeded"]


async def test_active_row_lost_from_redis_does_not_block_the_key(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})
    await redis_client.flushdb()  # Redis lost its data; the ledger still says queued

    again = await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})

    assert again.enqueued
    runs = await ledger.runs_of(pool, "sweep_timeouts")
    assert [(r.state, r.error_class) for r in runs] == [("queued", None), ("dead", "LostJob")]


async def test_still_wanted_is_asked_after_the_row_and_can_enqueue_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    seen: list[bool] = []

    async def asked(conn: asyncpg.Connection) -> bool:  # sees its own run's row: asked after the insert
        seen.append(await conn.fetchval("SELECT count(*) FROM runtime.job_runs WHERE job_id = 'w'") == 1)
        return len(seen) > 1

    refused = await enqueue(redis_client, pool, ECHO, {}, job_id="w", still_wanted=asked)
    assert not refused.enqueued and refused.run_id is None
    assert await ledger.latest_run(pool, "w") is None and not await redis_client.exists(job_key("w"))

    wanted = await enqueue(redis_client, pool, ECHO, {}, job_id="w", still_wanted=asked)
    assert wanted.enqueued and seen == [True, True]
    run = await ledger.latest_run(pool, "w")
    assert run is not None and run.state == "queued" and await redis_client.exists(job_key("w"))


async def test_deferred_enqueue_scores_in_the_future(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    result = await enqueue(redis_client, pool, ECHO, {}, defer_by=timedelta(minutes=10))

    score = await redis_client.zscore(queue_key("interactive"), result.job_id)
    expected = (datetime.now(UTC) + timedelta(minutes=10)).timestamp() * 1000
    assert score is not None and abs(score - expected) < 5_000
    with pytest.raises(JobArgumentsError, match="either a delay or a start time"):
        await enqueue(redis_client, pool, ECHO, {}, defer_by=timedelta(1), run_at=datetime.now(UTC))
