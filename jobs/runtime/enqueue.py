"""Enqueueing a job: validate its arguments, write the ledger row, then the arq job, deduplicated by job id."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pydantic
import redis.asyncio as aioredis

from jobs.runtime import queue as redis_queue
from jobs.runtime import wire
from jobs.runtime.arq_seam import expires_extra_ms
from jobs.runtime.keys import QUEUES
from jobs.runtime.registry import JobSpec, JobTable
from jobs.runtime.retry import invalid_args_message
from store import ledger
from store.postgres import Executor
from store.repos._base import serialized

ENQUEUE_LOCK_PREFIX = "orrery.enqueue:"
"""The advisory lock key of a job id while it is being enqueued (see enqueue)."""


class JobArgumentsError(ValueError):
    """Arguments that do not fit the job's model; nothing was enqueued. The message lists every bad field."""


@dataclass(frozen=True)
class EnqueueResult:
    job_id: str
    name: str
    queue: str
    enqueued: bool
    """False: a run of this job id is already queued or running, so nothing new was enqueued."""
    run_at: datetime
    run_id: int | None = None
    """The ledger row of the new run (None when not enqueued)."""


def _nul_path(value: Any, path: str) -> str | None:
    """Where the first string holding a NUL character is (Postgres text and jsonb cannot store one), else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nul_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def validate_args(spec: JobSpec, args: Mapping[str, Any]) -> pydantic.BaseModel:
    """The job's args model, or one JobArgumentsError naming every bad field (and a value Postgres cannot store)."""
    try:
        model = spec.args_model.model_validate(dict(args))
    except pydantic.ValidationError as exc:
        raise JobArgumentsError(f"job {spec.name!r}: {invalid_args_message(exc)}") from None
    nul_at = _nul_path(model.model_dump(mode="json"), "")
    if nul_at is not None:
        raise JobArgumentsError(
            f"job {spec.name!r}: {nul_at}: contains a NUL character (\\u0000), which cannot be stored"
        )
    return model


def resolve_run_at(now: datetime, *, defer_by: timedelta | None, run_at: datetime | None) -> datetime:
    """When the job may start: now, now + defer_by, or run_at (naive datetimes are taken as UTC)."""
    if defer_by is not None and run_at is not None:
        raise JobArgumentsError("give either a delay or a start time, not both")
    if run_at is not None:
        return run_at if run_at.tzinfo is not None else run_at.replace(tzinfo=UTC)
    return now + defer_by if defer_by is not None else now


async def push_job(
    redis: aioredis.Redis, *, job_id: str, name: str, queue: str, args: Mapping[str, Any], run_at: datetime
) -> bool:
    """Write the arq job; False when a job with this id is already queued or running."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    score = int(run_at.timestamp() * 1000)
    ttl_ms = max(score - now_ms, 0) + expires_extra_ms
    record = wire.job_record(name, args, enqueue_time_ms=now_ms)
    return await redis_queue.push(redis, job_id=job_id, queue=queue, record=record, ttl_ms=ttl_ms, score_ms=score)


async def enqueue(
    redis: aioredis.Redis,
    pool: Executor,
    spec: JobSpec,
    args: Mapping[str, Any],
    *,
    job_id: str | None = None,
    queue: str | None = None,
    defer_by: timedelta | None = None,
    run_at: datetime | None = None,
    still_wanted: Callable[[asyncpg.Connection], Awaitable[bool]] | None = None,
) -> EnqueueResult:
    """Validate, deduplicate, record and enqueue one job (see the module docstring).

    `still_wanted`, when given, is asked once the ledger row is written, in its transaction and under the job id's
    lock; False enqueues nothing. It is for producers that decided from an earlier read (the timeout sweep read a
    conversation as waiting for ingestion): the dedupe frees a job id only once its last run is final, so a check
    made after the insert sees everything that run's end committed before it (a dead ingestion's conversation
    marked `failed`), which the producer's own earlier read could not.

    The ledger row is written before the Redis job so a worker never starts a run the ledger has not seen; the
    ledger's unique index on active job ids is the dedupe check, confirmed against Redis so that a row left active by
    lost Redis data cannot block the key forever.

    Why the advisory lock on the job id (a transaction around check, insert and push): without it, a second
    producer of the same id saw the first one's ledger row before its Redis push, took the row for one whose job
    was lost, and marked the queued job LostJob. Under the lock, a row without a Redis job really is lost. Other
    producers of the same id wait for the push (one Redis round trip); other ids do not wait at all.
    """
    name = spec.name
    model = validate_args(spec, args)
    queue = queue or spec.queue
    if queue not in QUEUES:
        raise JobArgumentsError(f"unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    if spec.identity is not None:
        try:
            model, identified = await spec.identity.resolve(pool, model)
        except ValueError as exc:
            raise JobArgumentsError(f"job {spec.name!r}: {exc}") from None
        job_id = job_id or identified
    job_id = job_id or spec.job_id_for(model) or uuid.uuid4().hex
    when = resolve_run_at(datetime.now(UTC), defer_by=defer_by, run_at=run_at)
    values = model.model_dump(mode="json")
    not_enqueued = EnqueueResult(job_id, name, queue, enqueued=False, run_at=when)

    async with serialized(pool, ENQUEUE_LOCK_PREFIX + job_id) as conn:

        async def insert() -> int | None:
            return await ledger.insert_queued(
                conn, job_id=job_id, job_name=name, queue=queue, args=values, max_tries=spec.max_tries, run_at=when
            )

        run_id = await insert()
        if run_id is None:
            if await redis_queue.holds(redis, job_id):
                return not_enqueued
            await ledger.mark_lost(conn, job_id)
            run_id = await insert()
            if run_id is None:  # a worker recorded a run pushed straight into Redis in between
                return not_enqueued
        if still_wanted is not None and not await still_wanted(conn):
            await ledger.delete_run(conn, run_id)
            return not_enqueued
        if not await push_job(redis, job_id=job_id, name=name, queue=queue, args=values, run_at=when):
            await ledger.delete_run(conn, run_id)
            return not_enqueued
    return EnqueueResult(job_id, name, queue, enqueued=True, run_at=when, run_id=run_id)


class NotRetryableError(LookupError):
    """`jobs retry` was given a job id that is unknown or whose latest run is not dead."""


async def retry_dead(redis: aioredis.Redis, pool: Executor, jobs: JobTable, job_id: str) -> EnqueueResult:
    """Re-enqueue a dead letter with the same name, arguments, queue and id (the ledger keeps the dead run)."""
    run = await ledger.latest_run(pool, job_id)
    if run is None:
        raise NotRetryableError(f"no job with id {job_id!r} in the ledger")
    if run.state != "dead":
        raise NotRetryableError(f"job {job_id} is {run.state}, not dead; only dead letters can be retried")
    return await enqueue(redis, pool, jobs.get(run.job_name), run.args, job_id=job_id, queue=run.queue)


class NotCancellableError(LookupError):
    """`jobs cancel` was given a job id that is unknown or not queued (finished, or never enqueued)."""


CANCEL_REASON = "cancelled by an operator"


async def cancel_queued(redis: aioredis.Redis, pool: Executor, job_id: str) -> bool:
    """Take a queued job (or one waiting for its next try) off its queue and end its run `cancelled`; False when a
    worker runs it now (it is left alone). Redis first, atomically against a claim (jobs/runtime/queue.py): a job
    cancelled there can no longer start; if the ledger write then fails, the same call again finishes it."""
    view = await redis_queue.peek(redis, job_id)
    run = await ledger.latest_run(pool, job_id)
    if view is None and (run is None or run.state not in ledger.ACTIVE_STATES):
        state = f"is {run.state}" if run is not None else "is not in the ledger or in Redis"
        raise NotCancellableError(f"job {job_id} {state}: nothing to cancel")
    if view is not None and (
        view.running or (view.queue and not await redis_queue.remove_queued(redis, job_id, view.queue))
    ):
        return False
    if run is not None:
        name, queue, args = run.job_name, run.queue, run.args
    else:  # enqueued straight into Redis by another program: recorded now, as cancelled
        assert view is not None
        name, queue = view.name or "", view.queue or "?"
        args = view.args if isinstance(view.args, dict) else {}
    await ledger.cancel(pool, job_id=job_id, job_name=name, queue=queue, args=args, reason=CANCEL_REASON)
    return True
