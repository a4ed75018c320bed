"""The one-script claim against a real Redis: which jobs it takes, the lease it sets, and no job taken twice."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from jobs.runtime.keys import in_progress_key, queue_key
from jobs.runtime.queue import Claimed, QueueClaimer

NOW = 1_800_000_000_000
QUEUE = queue_key("claim-test")


async def test_takes_due_jobs_nobody_holds_oldest_first_up_to_the_number_wanted(redis_client: aioredis.Redis) -> None:
    await redis_client.zadd(QUEUE, {"a": NOW - 3000, "b": NOW - 2000, "c": NOW - 1000, "later": NOW + 60_000})
    await redis_client.set(in_progress_key("a"), b"1")  # running on another worker
    claimer = QueueClaimer(redis_client, QUEUE, lease_ms=5000)

    assert await claimer.claim(NOW, wanted=1) == [Claimed("b", NOW - 2000)]
    assert 4000 < await redis_client.pttl(in_progress_key("b")) <= 5000
    assert await claimer.claim(NOW, wanted=5) == [Claimed("c", NOW - 1000)]  # a and b are held, `later` not due
    assert await claimer.claim(NOW, wanted=5) == []
    assert await claimer.claim(NOW, wanted=0) == []
    assert await redis_client.exists(in_progress_key("later")) == 0
    assert await redis_client.zcard(QUEUE) == 4  # claiming leaves jobs in the queue; arq removes them when done

    assert await claimer.claim(NOW + 60_000, wanted=5) == [Claimed("later", NOW + 60_000)]


async def test_reads_on_past_running_jobs_step_by_step_up_to_the_limit(redis_client: aioredis.Redis) -> None:
    """Running jobs stay at the head of the queue; a free one behind several steps of them is still found."""
    held = {f"held-{index}": NOW - 100 + index for index in range(7)}
    await redis_client.zadd(QUEUE, {**held, "free": NOW - 1})
    for job_id in held:
        await redis_client.set(in_progress_key(job_id), b"1")

    stopped_early = QueueClaimer(redis_client, QUEUE, lease_ms=5000, scan_step=2, scan_limit=6)
    assert await stopped_early.claim(NOW, wanted=5) == []
    found = QueueClaimer(redis_client, QUEUE, lease_ms=5000, scan_step=2, scan_limit=8)
    assert await found.claim(NOW, wanted=5) == [Claimed("free", NOW - 1)]


async def test_racing_claimers_never_take_the_same_job(redis_client: aioredis.Redis) -> None:
    await redis_client.zadd(QUEUE, {f"job-{index:02}": NOW - 100 + index for index in range(30)})
    claimers = [QueueClaimer(redis_client, QUEUE, lease_ms=5000) for _ in range(8)]

    batches = await asyncio.gather(*(claimer.claim(NOW, wanted=5) for claimer in claimers))

    taken = [job.job_id for batch in batches for job in batch]
    assert len(taken) == len(set(taken)) == 30


async def test_still_works_after_redis_forgot_the_script(redis_client: aioredis.Redis) -> None:
    """A Redis restart or SCRIPT FLUSH drops loaded scripts; the claimer loads it again instead of failing."""
    await redis_client.zadd(QUEUE, {"a": NOW - 2, "b": NOW - 1})
    claimer = QueueClaimer(redis_client, QUEUE, lease_ms=5000)
    assert await claimer.claim(NOW, wanted=1) == [Claimed("a", NOW - 2)]

    await redis_client.script_flush()

    assert await claimer.claim(NOW, wanted=1) == [Claimed("b", NOW - 1)]
