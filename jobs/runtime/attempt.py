"""One attempt of one job under arq: ledger, timeout, error classification, retry/dead/defer, structured logs.

arq's own behaviour is kept out of the decisions: it is told to retry (arq.worker.Retry with our backoff) or that the
job is done (we return), and its max_tries is set out of reach so that the ledger, not arq, decides what is dead.

Three rules keep a job from vanishing or looping:
- Postgres or Redis being unreachable never costs a job or a try: whether the start, the handler or the ledger write
  after it failed that way, the attempt ends in arq's Retry with its try given back (`_wait_for_stores`).
- A final outcome (succeeded or dead) the ledger could not take is kept in Redis next to the job (keys.outcome_key)
  and the job stays queued; its next attempt records that outcome instead of running the handler again. Re-running
  would also be safe (handlers are idempotent), but it would repeat an LLM call for nothing.
- Every dead path goes through `mark_dead`: the dead ledger row (escaped, or in a Redis list, when Postgres cannot
  hold the record as written), one "job dead" log line, then, for a run that started, the job's on_dead hook (a
  record that never ran changes no domain row).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncpg
import pydantic
import redis.exceptions
import structlog

from core.errors import BudgetExceededError
from jobs.runtime import metrics, tracing, wire
from jobs.runtime.arq_seam import Function, Retry, expires_extra_ms, function
from jobs.runtime.context import JobContext
from jobs.runtime.keys import UNRECORDED_DEAD_KEY, job_key, outcome_key, retry_key
from jobs.runtime.registry import JobSpec, JobTable, UnknownJobError
from jobs.runtime.resources import WorkerResources
from jobs.runtime.retry import Decision, backoff_delay, decide, describe
from store import ledger

RESOURCES = "orrery"
"""The arq ctx key holding the process's WorkerResources."""

ARQ_TIMEOUT_MARGIN_S = 10.0
"""arq's own timeout is the job's plus this, so ours fires first and the ledger write after it still fits."""

ARQ_MAX_TRIES = 1_000_000
"""arq must never dead-letter on its own (it would drop the job without a ledger row); the runtime decides."""

PROBE_TIMEOUT_S = 2.0
"""How long the check "are Postgres and Redis there?" after a connection error in a handler may take."""

UNRECORDED_DEAD_LIMIT = 1000
"""The Redis list of dead letters the ledger cannot hold keeps this many, newest first."""

logger = structlog.get_logger("orrery.jobs")

ArqCoroutine = Callable[..., Awaitable[None]]

_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # FileNotFoundError (the socket vanished while Postgres restarted), ConnectionRefusedError, resets
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "pool is closing", "connection was closed in the middle of operation"
    asyncpg.exceptions.OperatorInterventionError,  # CannotConnectNow (starting up), AdminShutdown, CrashShutdown
    asyncpg.exceptions.InsufficientResourcesError,  # TooManyConnections
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
_UNRECORDABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,  # a NUL or a lone surrogate in text or jsonb, a number out of range
    asyncpg.exceptions._base.DataError,  # the client could not encode an argument
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,  # a job id too long for the index
    UnicodeError,
)


def store_unreachable(exc: BaseException) -> bool:
    """Postgres or Redis could not be reached (wait and try again), as opposed to refusing what it was given."""
    return isinstance(exc, _UNREACHABLE) and not isinstance(exc, _UNRECORDABLE)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as written to its ledger row (and kept in Redis while the ledger is away)."""

    run_id: int
    state: ledger.RunState
    duration_ms: int
    error_class: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _from_ms(unix_ms: float | None) -> datetime | None:
    """A queue score as a datetime, None when it is none or out of a datetime's range (a producer's own score)."""
    try:
        return datetime.fromtimestamp(unix_ms / 1000, UTC) if unix_ms is not None else None
    except (OverflowError, OSError, ValueError):
        return None


async def _reschedule(resources: WorkerResources, job_id: str, delay_s: float, *, keep_attempt: bool) -> None:
    """Keep the job record alive until its next run; a deferral or a hand-back does not use up an attempt."""
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.pexpire(job_key(job_id), int(delay_s * 1000) + expires_extra_ms)
        pipe.pexpire(outcome_key(job_id), int(delay_s * 1000) + expires_extra_ms)
        if keep_attempt:
            pipe.decr(retry_key(job_id))
        await pipe.execute()


async def _retry_later(ctx: JobContext, delay_s: float, *, keep_attempt: bool) -> NoReturn:
    """Raise arq's Retry, which keeps the job; the record's expiry is pushed back first when Redis allows it."""
    try:
        await _reschedule(ctx.resources, ctx.job_id, delay_s, keep_attempt=keep_attempt)
    except Exception as exc:  # Redis away too: the record still has a day to live, and the lease brings it back
        ctx.log.warning("job not rescheduled: Redis unavailable", error_class=type(exc).__name__)
    raise Retry(defer=delay_s) from None


async def _wait_for_stores(ctx: JobContext, spec: JobSpec, event: str, exc: BaseException) -> NoReturn:
    """Postgres or Redis is away: give the try back and come again after a backoff."""
    delay = backoff_delay(max(spec.backoff_s, 1.0), max(ctx.attempt, 1))
    ctx.log.warning(event, error_class=type(exc).__name__, error=describe(exc), retry_in_s=round(delay, 2))
    await _retry_later(ctx, delay, keep_attempt=True)


async def _stores_reachable(resources: WorkerResources) -> bool:
    """Whether Postgres and Redis answer now (after a handler's connection error: theirs, or some other service's?)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await resources.ledger_pool.fetchval("SELECT 1")
            await resources.redis.ping()
    except Exception:
        return False
    return True


async def run_attempt(
    spec: JobSpec,
    resources: WorkerResources,
    job_id: str,
    attempt: int,
    raw: dict[str, Any],
    *,
    enqueued_at: datetime | None = None,
    run_at: datetime | None = None,
) -> None:
    """Run one attempt; returns when the run is finished (succeeded or dead), raises arq's Retry otherwise.

    `enqueued_at` (the record's `et`) and `run_at` (its queue score) date the ledger row when this attempt creates
    it, i.e. when a producer wrote the job straight into Redis."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, job_name=spec.name, attempt=attempt)
    trace_id = tracing.current_trace_id()
    if trace_id is not None:  # every line of the attempt, the agents' included, leads to its trace
        structlog.contextvars.bind_contextvars(trace_id=trace_id)
    log = logger.bind(job_id=job_id, job_name=spec.name, attempt=attempt)
    ctx = JobContext(
        settings=resources.settings,
        pool=resources.pool,
        redis=resources.redis,
        job_id=job_id,
        job_name=spec.name,
        attempt=attempt,
        log=log,
        resources=resources,
        spec=spec,
    )
    started = time.perf_counter()
    try:
        run = await ledger.start_run(
            resources.ledger_pool,
            job_id=job_id,
            job_name=spec.name,
            queue=spec.queue,
            args=raw,
            attempt=attempt,
            max_tries=spec.max_tries,
            worker_id=resources.worker_id,
            enqueued_at=enqueued_at,
            run_at=run_at,
            trace_id=trace_id,
        )
    except Exception as exc:
        if not isinstance(exc, _UNRECORDABLE):  # Postgres unreachable: leave the job queued and come back later
            await _wait_for_stores(ctx, spec, "job not started: ledger unavailable", exc)
        error = f"the ledger cannot record this job as written ({describe(exc)}); fix the producer and enqueue it again"
        try:
            await mark_dead(ctx, spec, raw, None, error_class="NotRunnable", error=error, queue=spec.queue)
        except Exception as dead_exc:
            if not store_unreachable(dead_exc):
                raise
            await _wait_for_stores(ctx, spec, "dead letter not recorded: ledger unavailable", dead_exc)
        return
    if run.taken_over:
        metrics.lease_taken_over()
    if run.unfinished:
        try:
            if await _record_kept_outcome(ctx, spec, raw, run.run_id):
                return
        except Exception as exc:
            if not store_unreachable(exc):
                raise
            await _wait_for_stores(ctx, spec, "kept outcome not read: Redis unavailable", exc)

    if attempt > spec.max_tries:  # only reachable when workers died mid-run on every try
        error = f"started {attempt - 1} times without finishing (worker killed each time); not trying again"
        await mark_dead(ctx, spec, raw, Outcome(run.run_id, "dead", 0, "Abandoned", error))
        return

    log.info("job started")
    try:
        args = spec.args_model.model_validate(raw)
        async with asyncio.timeout(spec.timeout_s):
            result = await spec.handler(ctx, args)
    except asyncio.CancelledError:
        # The worker is stopping (shutdown grace exceeded): hand the job back; arq puts it back in the queue.
        error = "worker stopped before the job finished; handed back to the queue"
        outcome = Outcome(run.run_id, "queued", _elapsed_ms(started), "Interrupted", error)
        await _write_quietly(ctx, outcome)
        await _reschedule(resources, job_id, 0, keep_attempt=True)
        ctx.log.warning("job handed back", error_class="Interrupted")
        raise
    except Exception as exc:
        if store_unreachable(exc) and not await _stores_reachable(resources):
            await _wait_for_stores(ctx, spec, "job interrupted: Postgres or Redis unavailable", exc)
        decision = decide(
            exc,
            attempt=attempt,
            max_tries=spec.max_tries,
            backoff_s=spec.backoff_s,
            now=datetime.now(UTC),
            timeout_s=spec.timeout_s,
        )
        await _record_failure(ctx, spec, raw, run.run_id, decision, _elapsed_ms(started), exc)
        return
    duration = _elapsed_ms(started)
    summary = json.loads(wire.serialize(result)) if result is not None else None
    await _record_final(ctx, spec, Outcome(run.run_id, "succeeded", duration, result=summary))
    ctx.log.info("job succeeded", duration_ms=duration)


async def _record_failure(
    ctx: JobContext, spec: JobSpec, raw: dict[str, Any], run_id: int, decision: Decision, duration: int, exc: Exception
) -> None:
    fields: dict[str, Any] = {"error_class": decision.error_class, "error": decision.message, "duration_ms": duration}
    if not decision.expected:
        fields["exc_info"] = exc
    if decision.action == "dead":
        outcome = Outcome(run_id, "dead", duration, decision.error_class, decision.message)
        await mark_dead(ctx, spec, raw, outcome, exc_info=exc if not decision.expected else None)
        return
    next_run = datetime.now(UTC) + timedelta(seconds=decision.delay_s)
    state: ledger.RunState = "failed" if decision.action == "retry" else "queued"
    await _write_quietly(ctx, Outcome(run_id, state, duration, decision.error_class, decision.message), next_run)
    _observe(spec.name, "retried" if decision.action == "retry" else "deferred", duration, decision.error_class)
    if isinstance(exc, BudgetExceededError):
        metrics.budget_deferred()
    event = "job failed, will retry" if decision.action == "retry" else "job deferred"
    ctx.log.warning(event, retry_in_s=round(decision.delay_s, 2), **fields)
    await _retry_later(ctx, decision.delay_s, keep_attempt=decision.action == "defer")


def _observe(job: str, outcome: str, duration_ms: int | None, error_class: str | None = None) -> None:
    """An attempt's outcome for the metrics and its trace (succeeded, retried, dead, deferred), once recorded."""
    metrics.job_finished(job, outcome, duration_ms)
    tracing.annotate_outcome(outcome, error_class)


async def _write(db: asyncpg.Pool, outcome: Outcome, run_at: datetime | None = None) -> None:
    """finish_run, with what Postgres cannot hold (a NUL in an error message or a result) written out as escapes."""
    fields = asdict(outcome)
    try:
        await ledger.finish_run(db, run_at=run_at, **fields)
    except _UNRECORDABLE:
        await ledger.finish_run(db, run_at=run_at, **ledger.printable(fields))


async def _write_quietly(ctx: JobContext, outcome: Outcome, run_at: datetime | None = None) -> None:
    """A non-final state (retry, deferral, hand-back): the job runs again anyway, so a ledger that is away only costs
    the row this attempt's error; the next start_run brings the row up to date."""
    try:
        await _write(ctx.resources.ledger_pool, outcome, run_at)
    except Exception as exc:
        ctx.log.warning("ledger not updated", state=outcome.state, error_class=type(exc).__name__)


async def _record_final(ctx: JobContext, spec: JobSpec, outcome: Outcome) -> None:
    """Write a final outcome; while Postgres is away, keep it next to the job in Redis and keep the job queued."""
    try:
        await _write(ctx.resources.ledger_pool, outcome)
        ran = outcome.error_class != "Abandoned"  # an abandoned run's last try never reached its handler
        _observe(spec.name, outcome.state, outcome.duration_ms if ran else None, outcome.error_class)
    except Exception as exc:
        if not store_unreachable(exc):
            raise
        try:
            ttl_ms = int(await ctx.redis.pttl(job_key(ctx.job_id)))
            await ctx.redis.set(outcome_key(ctx.job_id), json.dumps(asdict(outcome)), px=max(ttl_ms, expires_extra_ms))
        except Exception as redis_exc:  # both away: the handler runs again later, which is safe (invariant 2)
            ctx.log.warning("outcome not kept: Redis unavailable", error_class=type(redis_exc).__name__)
        await _wait_for_stores(ctx, spec, f"job {outcome.state}, not yet recorded: ledger unavailable", exc)


async def _record_kept_outcome(ctx: JobContext, spec: JobSpec, raw: dict[str, Any], run_id: int) -> bool:
    """The previous try of this attempt finished but the ledger was away: record its outcome now (True) instead of
    running the handler again."""
    kept = await ctx.redis.get(outcome_key(ctx.job_id))
    if kept is None:
        return False
    outcome = Outcome(**json.loads(kept))
    if outcome.run_id != run_id:  # left over from an earlier run of this job id
        await ctx.redis.delete(outcome_key(ctx.job_id))
        return False
    if outcome.state == "dead":
        await mark_dead(ctx, spec, raw, outcome)
    else:
        await _record_final(ctx, spec, outcome)
        ctx.log.info("job succeeded", duration_ms=outcome.duration_ms, recorded_late=True)
    await ctx.redis.delete(outcome_key(ctx.job_id))
    return True


async def mark_dead(
    ctx: JobContext,
    spec: JobSpec | None,
    raw: Mapping[str, Any],
    outcome: Outcome | None,
    *,
    error_class: str = "",
    error: str = "",
    queue: str = "",
    exc_info: BaseException | None = None,
) -> None:
    """The one dead path: the dead ledger row, one "job dead" log line, then the job's on_dead hook for a run.

    `outcome` is the dead outcome of a run the ledger knows; None for a record that never got a run of its own (it
    cannot run, or the ledger cannot hold it as written): then `error_class`, `error` and `queue` describe it, and
    the row is written with escapes, or into the Redis list UNRECORDED_DEAD_KEY when even that is refused, and an
    unreachable store's error reaches the caller. For a run, a ledger away keeps the outcome (see _record_final).

    Why no hook for a record that never ran: its job did nothing, so there is nothing for the hook to clean up, and
    what a hook does to its entities (ingestion marks the conversation `failed`) would let one stray record (a
    producer's typo, an expired record) take a real conversation out of the sweep before any ingestion ran."""
    if outcome is not None and spec is not None:
        await _record_final(ctx, spec, outcome)
        error_class, error = outcome.error_class or "", outcome.error or ""
    else:
        await _record_unrunnable(ctx, spec, raw, queue=queue, error_class=error_class, error=error)
        _observe(spec.name if spec is not None else "unknown", "dead", None, error_class)  # a producer's name: no label
    ctx.log.error("job dead", error_class=error_class, error=error, exc_info=exc_info)
    if outcome is not None and spec is not None and spec.on_dead is not None:  # a record that never ran: no hook
        await _call_dead_hook(ctx, spec, spec.on_dead, raw, error)


async def _record_unrunnable(
    ctx: JobContext, spec: JobSpec | None, raw: Mapping[str, Any], *, queue: str, error_class: str, error: str
) -> None:
    """A dead letter without a run of its own: as written, else with escapes, else in the Redis list."""
    fields: dict[str, Any] = {
        "job_id": ctx.job_id,
        "job_name": ctx.job_name,
        "queue": queue,
        "args": dict(raw),
        "error_class": error_class,
        "error": error,
    }
    try:
        await ledger.mark_unrunnable(ctx.resources.ledger_pool, **fields)
        return
    except _UNRECORDABLE:
        pass
    try:
        await ledger.mark_unrunnable(ctx.resources.ledger_pool, **ledger.printable(fields))
        return
    except _UNRECORDABLE as exc:
        refused = exc
    entry = {
        "job_id": ctx.job_id,
        "queue": queue,
        "record": json.dumps({"f": ctx.job_name, "k": dict(raw)}),
        "error_class": error_class,
        "error": f"{error} (the ledger refused it: {describe(refused)})",
        "at": datetime.now(UTC).isoformat(),
    }
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.lpush(UNRECORDED_DEAD_KEY, json.dumps(entry))
        pipe.ltrim(UNRECORDED_DEAD_KEY, 0, UNRECORDED_DEAD_LIMIT - 1)
        await pipe.execute()
    ctx.log.error("dead letter kept in Redis: the ledger cannot hold it", key=UNRECORDED_DEAD_KEY)


async def _call_dead_hook(
    ctx: JobContext,
    spec: JobSpec,
    hook: Callable[[JobContext, Any, str], Awaitable[None]],
    raw: Mapping[str, Any],
    reason: str,
) -> None:
    """on_dead with the validated arguments; arguments that never validated name no entity, so no hook runs."""
    try:
        args = spec.args_model.model_validate(dict(raw))
    except pydantic.ValidationError:
        return
    try:
        async with asyncio.timeout(spec.timeout_s):
            await hook(ctx, args, reason)
    except Exception as exc:
        ctx.log.error(
            "dead hook failed; the run is dead all the same",
            error_class=type(exc).__name__,
            error=describe(exc),
            exc_info=exc,
        )


async def record_unrunnable(resources: WorkerResources, queue: str, job_id: str, arq_result: bytes | None) -> bool:
    """A record arq cannot run (unreadable, a field of the wrong type, an unknown job, expired) as a NotRunnable dead
    letter with the reason, through mark_dead. Called from the worker's finish_failed_job before arq deletes the
    job: True once recorded, False while Postgres or Redis is unreachable (then the job must be left where it is:
    its lease runs out and a worker reads it again)."""
    log = logger.bind(job_id=job_id)
    try:
        stored = await resources.redis.get(job_key(job_id))
    except Exception as exc:
        log.warning("dead letter not recorded yet: Redis unavailable", error_class=type(exc).__name__)
        return False
    name, args, attempt, reason = _unrunnable(stored, arq_result, queue, resources.jobs)
    spec = _known_job(resources, name)
    ctx = JobContext(
        settings=resources.settings,
        pool=resources.pool,
        redis=resources.redis,
        job_id=job_id,
        job_name=name,
        attempt=attempt,
        log=log.bind(job_name=name),
        resources=resources,
        spec=spec,
    )
    try:
        await mark_dead(ctx, spec, args, None, error_class="NotRunnable", error=reason, queue=queue)
    except Exception as exc:
        if store_unreachable(exc):
            log.warning("dead letter not recorded yet: ledger unavailable", error_class=type(exc).__name__)
            return False
        log.error("dead letter not recorded", error_class="NotRunnable", error=reason, exc_info=exc)
    return True


def _unrunnable(
    stored: bytes | None, arq_result: bytes | None, queue: str, jobs: JobTable | None
) -> tuple[str, dict[str, Any], int, str]:
    """(job name, arguments, attempt, reason) of a record arq could not run, read from the record itself: arq's own
    summary says only "unable to deserialize job" and loses the name and arguments."""
    summary: dict[str, Any] = json.loads(arq_result) if arq_result else {}
    tried = summary.get("t")
    attempt = tried if isinstance(tried, int) else 1
    if stored is None:
        return str(summary.get("f") or "?"), {}, attempt, "the job record expired or was deleted before it could run"
    try:
        record = wire.deserialize(stored)
    except wire.RecordError as exc:
        try:
            loose = json.loads(stored)
        except ValueError:
            loose = None
        fields: dict[str, Any] = loose if isinstance(loose, dict) else {}
        name, args = fields.get("f"), fields.get("k")
        name = name if isinstance(name, str) and name else "?"
        return (
            name,
            args if isinstance(args, dict) else {},
            attempt,
            f"unusable job record: {exc}; fix the producer and enqueue it again",
        )
    name, args = str(record["f"]), dict(record["k"])
    if jobs is None:
        return name, args, attempt, str(summary.get("r") or "the job could not be started")
    try:
        spec = jobs.get(name)
    except UnknownJobError as exc:
        return name, args, attempt, str(exc)
    if spec.queue != queue:
        return name, args, attempt, f"job {name!r} runs on queue {spec.queue!r}, not {queue!r}; enqueue it there"
    return name, args, attempt, str(summary.get("r") or "the job could not be started")


def _known_job(resources: WorkerResources, name: str) -> JobSpec | None:
    if resources.jobs is None:
        return None
    try:
        return resources.jobs.get(name)
    except UnknownJobError:
        return None


def arq_function(spec: JobSpec) -> Function:
    """The arq function for a spec: arq passes the job's keyword arguments; validation happens in run_attempt."""

    async def entry(ctx: dict[str, Any], **raw: Any) -> None:
        with metrics.in_flight(spec.queue), tracing.attempt_span(spec.name, ctx["job_id"], ctx["job_try"], spec.queue):
            await run_attempt(
                spec,
                ctx[RESOURCES],
                ctx["job_id"],
                ctx["job_try"],
                raw,
                enqueued_at=ctx.get("enqueue_time"),
                run_at=_from_ms(ctx.get("score")),
            )

    entry.__qualname__ = f"job:{spec.name}"
    return function(entry, name=spec.name, timeout_s=spec.timeout_s + ARQ_TIMEOUT_MARGIN_S, max_tries=ARQ_MAX_TRIES)
