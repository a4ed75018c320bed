"""Worker resources (jobs/runtime/resources.py): the ledger's DSN and the lifespan of declared resources."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from core.errors import PermanentError
from jobs.diagnostics import ECHO
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, health_key_pattern, queue_key
from jobs.runtime.queue import WorkerReport
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import Resource, WorkerResources, ledger_dsn
from jobs.runtime.worker import WorkerConfigError, WorkerOptions, run_workers
from settings import Settings, load_settings
from store import ledger
from tests.jobs.conftest import BurstRunner, wait_until
from tests.jobs.testjobs import TEST_JOBS


def test_ledger_connections_skip_the_commit_flush() -> None:
    assert ledger_dsn("postgresql://u:p@h:5432/db") == "postgresql://u:p@h:5432/db?synchronous_commit=off"
    assert ledger_dsn("postgresql://u@/db?host=/tmp/s&synchronous_commit=on") == (
        "postgresql://u@/db?host=%2Ftmp%2Fs&synchronous_commit=off"
    )


# --- declared resources -------------------------------------------------------------------------------------------

EVENTS: list[str] = []


@asynccontextmanager
async def _open_counter(resources: WorkerResources) -> AsyncIterator[dict[str, int]]:
    EVENTS.append("open")
    await asyncio.sleep(0.05)  # concurrent first users all arrive while it opens
    try:
        yield {"uses": 0}
    finally:
        EVENTS.append("close")


COUNTER: Resource[dict[str, int]] = Resource("counter", _open_counter)


class UseArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    undeclared: bool = False


async def _use(ctx: JobContext, args: UseArgs) -> dict[str, Any]:
    if args.undeclared:
        await ctx.resource(LLM)
    counter = await ctx.resource(COUNTER)
    counter["uses"] += 1
    return {"uses": counter["uses"]}


USE = JobSpec(
    name="test.uses-counter",
    args_model=UseArgs,
    handler=_use,
    queue=INTERACTIVE,
    timeout_s=5,
    max_tries=1,
    backoff_s=0,
    dedupe_key=None,
    cron=None,
    description="Test-only: takes a declared resource.",
    resources=(COUNTER,),
)


async def test_a_resource_opens_once_on_first_use_and_closes_at_shutdown(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    EVENTS.clear()
    run_burst.jobs = TEST_JOBS.with_jobs(USE)
    jobs = [await enqueue(redis_client, pool, USE, {}) for _ in range(6)]
    await run_burst()

    assert EVENTS == ["open", "close"]  # six jobs, four at a time, one instance for the process
    runs = [await ledger.latest_run(pool, job.job_id) for job in jobs]
    assert sorted(run.result["uses"] for run in runs if run is not None and run.result) == [1, 2, 3, 4, 5, 6]


async def test_a_job_that_never_asks_opens_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    EVENTS.clear()
    run_burst.jobs = TEST_JOBS.with_jobs(USE)
    await enqueue(redis_client, pool, ECHO, {})
    await run_burst()
    assert EVENTS == []


async def test_an_undeclared_resource_is_refused_with_the_job_and_resource_named(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    run_burst.jobs = TEST_JOBS.with_jobs(USE)
    job = await enqueue(redis_client, pool, USE, {"undeclared": True})
    await run_burst()
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and run.state == "dead"
    assert "'test.uses-counter' uses resource 'llm' without declaring it" in (run.error or "")


async def test_resources_close_last_opened_first(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> None:
    order: list[str] = []

    def named(name: str) -> Resource[str]:
        @asynccontextmanager
        async def opener(resources: WorkerResources) -> AsyncIterator[str]:
            order.append(f"open {name}")
            yield name
            order.append(f"close {name}")

        return Resource(name, opener)

    first, second = named("first"), named("second")
    resources = WorkerResources(load_settings(), pool, redis_client, "test-host:1")
    assert await resources.get(first) == "first" and await resources.get(second) == "second"
    assert await resources.get(first) == "first" and resources.opened() == ["first", "second"]
    await resources.aclose()
    assert order == ["open first", "open second", "close second", "close first"]


def test_a_job_table_pickled_for_a_child_process_still_knows_its_resources() -> None:
    """`worker --processes N` pickles the table into each child: the resources a job declares must still be the
    module-level ones its handler asks for (once, every job with a resource was refused as undeclared there)."""
    import pickle

    from jobs.ingestion import INGEST

    copied = pickle.loads(pickle.dumps(TEST_JOBS.with_jobs(USE)))
    assert LLM in copied.get("ingest").resources and COUNTER in copied.get("test.uses-counter").resources
    assert copied.get("ingest").resources == INGEST.resources


# --- resources opened before a worker takes work ------------------------------------------------------------------

LOADED = asyncio.Event()
"""Set by the test when the slow resource may finish opening (a model still loading until then)."""


def _always(settings: Settings) -> bool:
    return True


@asynccontextmanager
async def _open_model(resources: WorkerResources) -> AsyncIterator[str]:
    EVENTS.append("loading")
    await LOADED.wait()
    EVENTS.append("loaded")
    yield "model"


MODEL: Resource[str] = Resource("slow-model", _open_model, warm=_always)


async def _use_model(ctx: JobContext, args: UseArgs) -> dict[str, Any]:
    EVENTS.append("job ran")
    return {"model": await ctx.resource(MODEL)}


USE_MODEL = dataclasses.replace(USE, name="test.uses-model", handler=_use_model, resources=(MODEL,))


async def test_a_worker_opens_a_warm_resource_before_it_takes_work_and_says_so_meanwhile(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings, database_url: str, redis_url: str
) -> None:
    """What the local embedding model needs (Resource.warm): no job waits for it, none skips work for want of it,
    and `run.py health` does not count the worker as live until it is ready."""
    EVENTS.clear()
    LOADED.clear()
    job = await enqueue(redis_client, pool, USE_MODEL, {})
    options = WorkerOptions(queues=(INTERACTIVE,), concurrency=2, burst=True)
    worker = asyncio.create_task(
        run_workers(settings, database_url, redis_url, options, TEST_JOBS.with_jobs(USE_MODEL))
    )

    async def health_lines() -> list[str]:
        keys = [key async for key in redis_client.scan_iter(match=health_key_pattern(INTERACTIVE))]
        return [value.decode() for value in await redis_client.mget(keys)] if keys else []

    [line] = await wait_until(health_lines)
    assert line.startswith("warming: opening slow-model") and not WorkerReport("w", line).serving
    assert EVENTS == ["loading"] and await redis_client.zcard(queue_key(INTERACTIVE)) == 1  # the job waits queued

    LOADED.set()
    await asyncio.wait_for(worker, 30)
    assert EVENTS == ["loading", "loaded", "job ran"]  # opened first, then the job, which found it open
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and run.state == "succeeded" and run.result == {"model": "model"}


async def test_a_resource_that_cannot_open_stops_the_worker_with_one_message(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings, database_url: str, redis_url: str
) -> None:
    @asynccontextmanager
    async def broken(resources: WorkerResources) -> AsyncIterator[str]:
        raise PermanentError("the local embedding model is not installed (sentence_transformers is missing)")
        yield "never"

    missing = dataclasses.replace(USE_MODEL, resources=(Resource("broken-model", broken, warm=_always),))
    job = await enqueue(redis_client, pool, missing, {})
    options = WorkerOptions(queues=(INTERACTIVE,), concurrency=2, burst=False)
    with pytest.raises(WorkerConfigError, match="could not get ready to take work: the local embedding model is not"):
        await asyncio.wait_for(
            run_workers(settings, database_url, redis_url, options, TEST_JOBS.with_jobs(missing)), 30
        )
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and run.state == "queued"  # never claimed
