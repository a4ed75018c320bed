"""JobSpec.on_dead is called once on every dead path of a run (issue 10 item 1, the runtime half): a permanent error,
the last try spent, a timeout on the last try, a run abandoned by killed workers. A record that never ran (it cannot
run) is a dead letter without the hook: it changes no domain row (issue 18 defect 5). A hook that raises is logged
and the run is dead all the same. The hook runs while the run's ledger row still holds the job id, so no producer
can enqueue the job again before the hook has said what dead means for its entity."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from jobs.runtime.attempt import run_attempt
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, job_key, queue_key
from jobs.runtime.resources import WorkerResources
from store import ledger
from tests.jobs.conftest import BurstRunner
from tests.jobs.testjobs import DOOMED


async def _hook_calls(redis_client: aioredis.Redis, mark: str) -> list[dict[str, Any]]:
    return [json.loads(entry) for entry in await redis_client.lrange(f"test:dead:{mark}", 0, -1)]  # type: ignore[misc]


async def test_every_dead_path_calls_the_hook_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    cases = {"perm": "permanent", "spent": "transient", "slow": "slow", "raise-perm": "permanent", "fine": "ok"}
    for mark, mode in cases.items():
        await enqueue(redis_client, pool, DOOMED, {"mark": mark, "mode": mode})

    await run_burst()

    expected = {
        "perm": ("PermanentError", 1, "perm cannot be done"),
        "spent": ("TransientError", 2, "spent failed for now (gave up after 2 of 2 tries)"),
        "slow": ("TimeoutError", 2, "timed out after 0.2 s (gave up after 2 of 2 tries)"),
        "raise-perm": ("PermanentError", 1, "raise-perm cannot be done"),
    }
    for mark, (error_class, attempt, reason) in expected.items():
        run = await ledger.latest_run(pool, f"doomed:{mark}")
        assert run is not None and (run.state, run.error_class, run.attempt, run.error) == (
            "dead",
            error_class,
            attempt,
            reason,
        ), mark
        assert await _hook_calls(redis_client, mark) == [{"attempt": attempt, "reason": reason, "id_held": True}], mark
    assert await _hook_calls(redis_client, "fine") == []


async def test_an_abandoned_run_calls_the_hook(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    """Workers killed on every try: arq's counter reaches max_tries + 1 and the runtime gives up."""
    job = await enqueue(redis_client, pool, DOOMED, {"mark": "abandoned", "mode": "ok"})

    await run_attempt(DOOMED, resources, job.job_id, DOOMED.max_tries + 1, {"mark": "abandoned", "mode": "ok"})

    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and (run.state, run.error_class) == ("dead", "Abandoned")
    assert await _hook_calls(redis_client, "abandoned") == [{"attempt": 3, "reason": run.error, "id_held": True}]


async def test_a_record_that_never_ran_calls_no_hook_and_invalid_arguments_do_not_either(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    records = {
        "doomed:bad-t": '{"f":"test.doomed","k":{"mark":"bad-t","mode":"ok"},"t":"1"}',
        "doomed:bad-k": '{"f":"test.doomed","k":{"mark":"bad-k","colour":"red"}}',  # runs, fails validation
        "doomed:bad-a": '{"f":"test.doomed","a":[1],"k":{"mark":"bad-a"}}',
    }
    for job_id, record in records.items():
        await redis_client.set(job_key(job_id), record, px=60_000)
        await redis_client.zadd(queue_key(INTERACTIVE), {job_id: time.time() * 1000})

    await run_burst()

    bad_t = await ledger.latest_run(pool, "doomed:bad-t")
    assert bad_t is not None and (bad_t.state, bad_t.error_class) == ("dead", "NotRunnable")
    assert await _hook_calls(redis_client, "bad-t") == []  # its arguments validate, but it never ran
    bad_a = await ledger.latest_run(pool, "doomed:bad-a")
    assert bad_a is not None and (bad_a.state, bad_a.error_class) == ("dead", "NotRunnable")
    assert await _hook_calls(redis_client, "bad-a") == []
    bad_k = await ledger.latest_run(pool, "doomed:bad-k")
    assert bad_k is not None and (bad_k.state, bad_k.error_class) == ("dead", "ValidationError")
    assert await _hook_calls(redis_client, "bad-k") == []  # arguments that never validated name no entity
    assert DOOMED.on_dead is not None and DOOMED.on_dead.__name__ == "_on_dead"
