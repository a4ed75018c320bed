"""The test registry: test-only jobs, and the table (the catalog's jobs plus these) the job tests run workers with.

Test jobs never join jobs/catalog.py's table; a test that needs one passes TEST_JOBS to the worker or looks it up
there.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import PermanentError, TransientError
from jobs.catalog import JOBS
from jobs.runtime.context import JobContext
from jobs.runtime.keys import BATCH, INTERACTIVE, in_progress_key
from jobs.runtime.registry import JobSpec, JobTable
from store import ledger


class SlowArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = 0.0
    mark: str = "slow"


async def _slow(ctx: JobContext, args: SlowArgs) -> dict[str, Any]:
    """Test-only job with a 0.3 s timeout: sleeps longer than that on its first attempt only."""
    await ctx.redis.incr(f"test:{args.mark}:attempts")
    if ctx.attempt == 1:
        await asyncio.sleep(args.sleep_s)
    return {"attempt": ctx.attempt}


SLOW = JobSpec(
    name="test.slow",
    args_model=SlowArgs,
    handler=_slow,
    queue=INTERACTIVE,
    timeout_s=0.3,
    max_tries=3,
    backoff_s=0.05,
    dedupe_key=None,
    cron=None,
    description="Test-only: times out on its first attempt.",
)


async def _broken_while_flagged(ctx: JobContext, args: SlowArgs) -> dict[str, Any]:
    """Test-only: fails permanently while Redis holds test:{mark}:broken (an entity that is missing, then fixed)."""
    if await ctx.redis.exists(f"test:{args.mark}:broken"):
        raise PermanentError(f"{args.mark} is broken")
    return {"attempt": ctx.attempt}


FIXABLE = JobSpec(
    name="test.fixable",
    args_model=SlowArgs,
    handler=_broken_while_flagged,
    queue=INTERACTIVE,
    timeout_s=5,
    max_tries=3,
    backoff_s=0.05,
    dedupe_key="fixable:{mark}",
    cron=None,
    description="Test-only: fixable.",
)


class DoomedArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mark: str
    mode: Literal["permanent", "transient", "slow", "ok"] = "permanent"


async def _doomed(ctx: JobContext, args: DoomedArgs) -> dict[str, Any]:
    if args.mode == "permanent":
        raise PermanentError(f"{args.mark} cannot be done")
    if args.mode == "transient":
        raise TransientError(f"{args.mark} failed for now")
    if args.mode == "slow":
        await asyncio.sleep(5)
    return {}


async def _on_dead(ctx: JobContext, args: DoomedArgs, reason: str) -> None:
    """Records each call: the marker a dead path must leave exactly once, and whether the run's ledger row still
    held the job id (not dead yet), so no producer could enqueue it again before the hook did its part."""
    run = await ledger.latest_run(ctx.resources.ledger_pool, ctx.job_id)
    held = run is not None and run.state != "dead"
    entry = {"attempt": ctx.attempt, "reason": reason, "id_held": held}
    await ctx.redis.rpush(f"test:dead:{args.mark}", json.dumps(entry))  # type: ignore[misc]
    if args.mark.startswith("raise"):
        raise RuntimeError("the hook itself failed")


DOOMED = JobSpec(
    name="test.doomed",
    args_model=DoomedArgs,
    handler=_doomed,
    queue=INTERACTIVE,
    timeout_s=0.2,
    max_tries=2,
    backoff_s=0.01,
    dedupe_key="doomed:{mark}",
    cron=None,
    description="Test-only: dies.",
    on_dead=_on_dead,
)


class QueryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = 0.5


async def _query(ctx: JobContext, args: QueryArgs) -> dict[str, Any]:
    """Test-only: one slow query, so that Postgres can go away in the middle of it."""
    await ctx.redis.incr(f"test:query:{ctx.job_id}")
    await ctx.pool.fetchval("SELECT pg_sleep($1)", args.sleep_s)
    return {"attempt": ctx.attempt}


QUERY = JobSpec(
    name="test.query",
    args_model=QueryArgs,
    handler=_query,
    queue=INTERACTIVE,
    timeout_s=10,
    max_tries=1,
    backoff_s=0.05,
    dedupe_key=None,
    cron=None,
    description="Test-only: one slow query.",
)


class NeedsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str


async def _noop(ctx: object, args: NeedsArgs) -> None:
    return None


NEEDS_ARGS = JobSpec(
    name="test.needs-args",
    args_model=NeedsArgs,
    handler=_noop,
    queue=BATCH,
    timeout_s=1,
    max_tries=1,
    backoff_s=0,
    dedupe_key=None,
    cron=None,
    description="Test-only: has a required argument.",
)


async def _loses_its_lease(ctx: JobContext, args: SlowArgs) -> dict[str, Any]:
    """Test-only: deletes its own lease mid-run, as a worker whose event loop stalls past the lease would find it
    lapsed, then sleeps: the job is due and unleased while this worker still runs it."""
    await ctx.redis.incr(f"test:{args.mark}:attempts")
    await ctx.redis.delete(in_progress_key(ctx.job_id))
    await asyncio.sleep(args.sleep_s)
    return {"attempt": ctx.attempt}


LEASE_LOST = JobSpec(
    name="test.lease_lost",
    args_model=SlowArgs,
    handler=_loses_its_lease,
    queue=INTERACTIVE,
    timeout_s=10,
    max_tries=3,
    backoff_s=0.05,
    dedupe_key=None,
    cron=None,
    description="Test-only: its lease lapses while it runs.",
)

TEST_JOBS = JOBS.with_jobs(SLOW, FIXABLE, DOOMED, QUERY, NEEDS_ARGS, LEASE_LOST)


def replacing(table: JobTable, *specs: JobSpec) -> JobTable:
    """`table` with each job of the same name as one of `specs` swapped for it (a variant with faster retries)."""
    names = {spec.name for spec in specs}
    return JobTable([*(spec for spec in table.all() if spec.name not in names), *specs])
