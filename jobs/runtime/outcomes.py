"""How an attempt's outcome is recorded: the ledger write (escaped when Postgres refuses the text), the outcome kept
in Redis while the ledger is away, giving a try back when a store is unreachable, and the metrics of each outcome.

Shared by the attempt (jobs/runtime/attempt.py) and the dead path (jobs/runtime/dead.py), so both record alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NoReturn

import asyncpg
import redis.exceptions

from jobs.runtime import metrics, tracing
from jobs.runtime.arq_seam import Retry, expires_extra_ms
from jobs.runtime.context import JobContext
from jobs.runtime.keys import job_key, outcome_key, retry_key
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import WorkerResources
from jobs.runtime.retry import backoff_delay, describe
from store import ledger

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # FileNotFoundError (the socket vanished while Postgres restarted), ConnectionRefusedError, resets
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "pool is closing", "connection was closed in the middle of operation"
    # a pooled connection whose server just went away, used before the loss reached it: "cannot switch to state 12;
    # another operation (2) is in progress" (CI saw a finish_run fail so during a Postgres restart, and the run's row
    # stayed 'running' for good); by the retry the pool knows the connection is closed and opens another
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # CannotConnectNow (starting up), AdminShutdown, CrashShutdown
    asyncpg.exceptions.InsufficientResourcesError,  # TooManyConnections
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
UNRECORDABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,  # a NUL or a lone surrogate in text or jsonb, a number out of range
    asyncpg.exceptions._base.DataError,  # the client could not encode an argument
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,  # a job id too long for the index
    UnicodeError,
)


def store_unreachable(exc: BaseException) -> bool:
    """Postgres or Redis could not be reached (wait and try again), as opposed to refusing what it was given."""
    return isinstance(exc, UNREACHABLE) and not isinstance(exc, UNRECORDABLE)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as written to its ledger row (and kept in Redis while the ledger is away)."""

    run_id: int
    state: ledger.RunState
    duration_ms: int
    error_class: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


async def reschedule(resources: WorkerResources, job_id: str, delay_s: float, *, keep_attempt: bool) -> None:
    """Keep the job record alive until its next run; a deferral or a hand-back does not use up an attempt."""
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.pexpire(job_key(job_id), int(delay_s * 1000) + expires_extra_ms)
        pipe.pexpire(outcome_key(job_id), int(delay_s * 1000) + expires_extra_ms)
        if keep_attempt:
            pipe.decr(retry_key(job_id))
        await pipe.execute()


async def retry_later(ctx: JobContext, delay_s: float, *, keep_attempt: bool) -> NoReturn:
    """Raise arq's Retry, which keeps the job; the record's expiry is pushed back first when Redis allows it."""
    try:
        await reschedule(ctx.resources, ctx.job_id, delay_s, keep_attempt=keep_attempt)
    except Exception as exc:  # Redis away too: the record still has a day to live, and the lease brings it back
        ctx.log.warning("job not rescheduled: Redis unavailable", error_class=type(exc).__name__)
    raise Retry(defer=delay_s) from None


async def wait_for_stores(ctx: JobContext, spec: JobSpec, event: str, exc: BaseException) -> NoReturn:
    """Postgres or Redis is away: give the try back and come again after a backoff."""
    delay = backoff_delay(max(spec.backoff_s, 1.0), max(ctx.attempt, 1))
    ctx.log.warning(event, error_class=type(exc).__name__, error=describe(exc), retry_in_s=round(delay, 2))
    await retry_later(ctx, delay, keep_attempt=True)


def observe(job: str, outcome: str, duration_ms: int | None, error_class: str | None = None) -> None:
    """An attempt's outcome for the metrics and its trace (succeeded, retried, dead, deferred), once recorded."""
    metrics.job_finished(job, outcome, duration_ms)
    tracing.annotate_outcome(outcome, error_class)


async def write(db: asyncpg.Pool, outcome: Outcome, run_at: datetime | None = None) -> None:
    """finish_run, with what Postgres cannot hold (a NUL in an error message or a result) written out as escapes."""
    fields = asdict(outcome)
    try:
        await ledger.finish_run(db, run_at=run_at, **fields)
    except UNRECORDABLE:
        await ledger.finish_run(db, run_at=run_at, **ledger.printable(fields))


async def write_quietly(ctx: JobContext, outcome: Outcome, run_at: datetime | None = None) -> None:
    """A non-final state (retry, deferral, hand-back): the job runs again anyway, so a ledger that is away only costs
    the row this attempt's error; the next start_run brings the row up to date."""
    try:
        await write(ctx.resources.ledger_pool, outcome, run_at)
    except Exception as exc:
        ctx.log.warning("ledger not updated", state=outcome.state, error_class=type(exc).__name__)


async def record_final(ctx: JobContext, spec: JobSpec, outcome: Outcome) -> None:
    """Write a final outcome; while Postgres is away, keep it next to the job in Redis and keep the job queued."""
    try:
        await write(ctx.resources.ledger_pool, outcome)
        ran = outcome.error_class != "Abandoned"  # an abandoned run's last try never reached its handler
        observe(spec.name, outcome.state, outcome.duration_ms if ran else None, outcome.error_class)
    except Exception as exc:
        if not store_unreachable(exc):
            raise
        try:
            ttl_ms = int(await ctx.redis.pttl(job_key(ctx.job_id)))
            await ctx.redis.set(outcome_key(ctx.job_id), json.dumps(asdict(outcome)), px=max(ttl_ms, expires_extra_ms))
        except Exception as redis_exc:  # both away: the handler runs again later, which is safe (invariant 2)
            ctx.log.warning("outcome not kept: Redis unavailable", error_class=type(redis_exc).__name__)
        await wait_for_stores(ctx, spec, f"job {outcome.state}, not yet recorded: ledger unavailable", exc)
