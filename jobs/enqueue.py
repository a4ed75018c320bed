"""Enqueueing a job: validate its arguments, write the ledger row, then the arq job, deduplicated by job id."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import redis.asyncio as aioredis
from arq.constants import expires_extra_ms

from jobs import wire
from jobs.keys import QUEUES, job_key, queue_key
from jobs.registry import JobSpec, get_job
from jobs.retry import invalid_args_message
from store import ledger
from store.postgres import Executor


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


def validate_args(spec: JobSpec, args: Mapping[str, Any]) -> pydantic.BaseModel:
    try:
        return spec.args_model.model_validate(dict(args))
    except pydantic.ValidationError as exc:
        raise JobArgumentsError(f"job {spec.name!r}: {invalid_args_message(exc)}") from None


def resolve_run_at(now: datetime, *, defer_by: timedelta | None, run_at: datetime | None) -> datetime:
    """When the job may start: now, now + defer_by, or run_at (naive datetimes are taken as UTC)."""
    if defer_by is not None and run_at is not None:
        raise JobArgumentsError("give either a delay or a start time, not both")
    if run_at is not None:
        return run_at if run_at.tzinfo is not None else run_at.replace(tzinfo=UTC)
    return now + defer_by if defer_by is not None else now


# Set the job record and add it to its queue unless a job with this id exists: one atomic round trip (arq's own
# enqueue_job needs four for the same WATCH/MULTI check).
_PUSH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


async def push_job(
    redis: aioredis.Redis, *, job_id: str, name: str, queue: str, args: Mapping[str, Any], run_at: datetime
) -> bool:
    """Write the arq job; False when a job with this id is already queued or running."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    score = int(run_at.timestamp() * 1000)
    ttl_ms = max(score - now_ms, 0) + expires_extra_ms
    record = wire.job_record(name, args, enqueue_time_ms=now_ms)
    keys_and_args = (job_key(job_id), queue_key(queue), record.decode(), str(ttl_ms), str(score), job_id)
    added = await redis.eval(_PUSH, 2, *keys_and_args)  # type: ignore[misc]  # redis-py types it as a union
    return bool(added)


async def enqueue(
    redis: aioredis.Redis,
    pool: Executor,
    name: str,
    args: Mapping[str, Any],
    *,
    job_id: str | None = None,
    queue: str | None = None,
    defer_by: timedelta | None = None,
    run_at: datetime | None = None,
) -> EnqueueResult:
    """Validate, deduplicate, record and enqueue one job (see the module docstring).

    The ledger row is written before the Redis job so a worker never starts a run the ledger has not seen; the
    ledger's unique index on active job ids is the dedupe check, confirmed against Redis so that a row left active by
    lost Redis data cannot block the key forever.
    """
    spec = get_job(name)
    model = validate_args(spec, args)
    queue = queue or spec.queue
    if queue not in QUEUES:
        raise JobArgumentsError(f"unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    job_id = job_id or spec.job_id_for(model) or uuid.uuid4().hex
    when = resolve_run_at(datetime.now(UTC), defer_by=defer_by, run_at=run_at)
    values = model.model_dump(mode="json")
    not_enqueued = EnqueueResult(job_id, name, queue, enqueued=False, run_at=when)

    async def insert() -> int | None:
        return await ledger.insert_queued(
            pool, job_id=job_id, job_name=name, queue=queue, args=values, max_tries=spec.max_tries, run_at=when
        )

    run_id = await insert()
    if run_id is None:
        if await redis.exists(job_key(job_id)):
            return not_enqueued
        await ledger.mark_lost(pool, job_id)
        run_id = await insert()
        if run_id is None:  # another producer won the race for this id in between
            return not_enqueued
    if not await push_job(redis, job_id=job_id, name=name, queue=queue, args=values, run_at=when):
        await ledger.delete_run(pool, run_id)
        return not_enqueued
    return EnqueueResult(job_id, name, queue, enqueued=True, run_at=when, run_id=run_id)


class NotRetryableError(LookupError):
    """`jobs retry` was given a job id that is unknown or whose latest run is not dead."""


async def retry_dead(redis: aioredis.Redis, pool: Executor, job_id: str) -> EnqueueResult:
    """Re-enqueue a dead letter with the same name, arguments, queue and id (the ledger keeps the dead run)."""
    run = await ledger.latest_run(pool, job_id)
    if run is None:
        raise NotRetryableError(f"no job with id {job_id!r} in the ledger")
    if run.state != "dead":
        raise NotRetryableError(f"job {job_id} is {run.state}, not dead; only dead letters can be retried")
    return await enqueue(redis, pool, run.job_name, run.args, job_id=job_id, queue=run.queue)
