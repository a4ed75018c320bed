"""One attempt of one job under arq: ledger, timeout, error classification, retry/dead/defer, structured logs.

arq's own behaviour is kept out of the decisions: it is told to retry (arq.worker.Retry with our backoff) or that the
job is done (we return), and its max_tries is set out of reach so that the ledger, not arq, decides what is dead.

Three rules keep a job from vanishing or looping:
- Postgres or Redis being unreachable never costs a job or a try: whether the start, the handler or the ledger write
  after it failed that way, the attempt ends in arq's Retry with its try given back (`wait_for_stores`).
- A final outcome (succeeded or dead) the ledger could not take is kept in Redis next to the job (keys.outcome_key)
  and the job stays queued; its next attempt records that outcome instead of running the handler again. Re-running
  would also be safe (handlers are idempotent), but it would repeat an LLM call for nothing.
- Every dead path goes through `mark_dead` (jobs/runtime/dead.py): the dead ledger row (escaped, or in a Redis
  list, when Postgres cannot hold the record as written), one "job dead" log line, then, for a run that started,
  the job's on_dead hook (a record that never ran changes no domain row).

How outcomes are written (and kept while the ledger is away) is jobs/runtime/outcomes.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from core.errors import BudgetExceededError
from jobs.runtime import metrics, tracing, wire
from jobs.runtime.arq_seam import Function, function
from jobs.runtime.context import JobContext
from jobs.runtime.dead import mark_dead
from jobs.runtime.keys import outcome_key
from jobs.runtime.outcomes import (
    UNRECORDABLE,
    Outcome,
    observe,
    record_final,
    reschedule,
    retry_later,
    store_unreachable,
    wait_for_stores,
    write_quietly,
)
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import WorkerResources
from jobs.runtime.retry import Decision, decide, describe
from store import ledger

RESOURCES = "orrery"
"""The arq ctx key holding the process's WorkerResources."""

ARQ_TIMEOUT_MARGIN_S = 10.0
"""arq's own timeout is the job's plus this, so ours fires first and the ledger write after it still fits."""

ARQ_MAX_TRIES = 1_000_000
"""arq must never dead-letter on its own (it would drop the job without a ledger row); the runtime decides."""

PROBE_TIMEOUT_S = 2.0
"""How long the check "are Postgres and Redis there?" after a connection error in a handler may take."""

logger = structlog.get_logger("orrery.jobs")


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _from_ms(unix_ms: float | None) -> datetime | None:
    """A queue score as a datetime, None when it is none or out of a datetime's range (a producer's own score)."""
    try:
        return datetime.fromtimestamp(unix_ms / 1000, UTC) if unix_ms is not None else None
    except (OverflowError, OSError, ValueError):
        return None


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
        if not isinstance(exc, UNRECORDABLE):  # Postgres unreachable: leave the job queued and come back later
            await wait_for_stores(ctx, spec, "job not started: ledger unavailable", exc)
        error = f"the ledger cannot record this job as written ({describe(exc)}); fix the producer and enqueue it again"
        try:
            await mark_dead(ctx, spec, raw, None, error_class="NotRunnable", error=error, queue=spec.queue)
        except Exception as dead_exc:
            if not store_unreachable(dead_exc):
                raise
            await wait_for_stores(ctx, spec, "dead letter not recorded: ledger unavailable", dead_exc)
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
            await wait_for_stores(ctx, spec, "kept outcome not read: Redis unavailable", exc)

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
        await write_quietly(ctx, outcome)
        await reschedule(resources, job_id, 0, keep_attempt=True)
        ctx.log.warning("job handed back", error_class="Interrupted")
        raise
    except Exception as exc:
        if store_unreachable(exc) and not await _stores_reachable(resources):
            await wait_for_stores(ctx, spec, "job interrupted: Postgres or Redis unavailable", exc)
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
    await record_final(ctx, spec, Outcome(run.run_id, "succeeded", duration, result=summary))
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
    await write_quietly(ctx, Outcome(run_id, state, duration, decision.error_class, decision.message), next_run)
    observe(spec.name, "retried" if decision.action == "retry" else "deferred", duration, decision.error_class)
    if isinstance(exc, BudgetExceededError):
        metrics.budget_deferred()
    if decision.action == "retry":
        ctx.log.warning("job failed, will retry", retry_in_s=round(decision.delay_s, 2), **fields)
    else:  # a planned wait (attachments being read, a token budget, a store away): not a failure
        ctx.log.info("job deferred", retry_in_s=round(decision.delay_s, 2), **fields)
    await retry_later(ctx, decision.delay_s, keep_attempt=decision.action == "defer")


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
        await record_final(ctx, spec, outcome)
        ctx.log.info("job succeeded", duration_ms=outcome.duration_ms, recorded_late=True)
    await ctx.redis.delete(outcome_key(ctx.job_id))
    return True


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
