"""Worker resources (jobs/runtime/resources.py): the ledger's DSN and the lifespan of declared resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from jobs.diagnostics import ECHO
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import Resource, WorkerResources, ledger_dsn
from settings import load_settings
from store import ledger
from tests.jobs.conftest import BurstRunner
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
