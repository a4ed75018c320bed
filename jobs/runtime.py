"""One attempt of one job under arq: ledger, timeout, error classification, retry/dead/defer, structured logs.

arq's own behaviour is kept out of the decisions: it is told to retry (arq.worker.Retry with our backoff) or that the
job is done (we return), and its max_tries is set out of reach so that the ledger, not arq, decides what is dead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import arq.worker
import structlog
from arq.constants import expires_extra_ms

from jobs import wire
from jobs.context import JobContext
from jobs.keys import job_key, retry_key
from jobs.registry import JobSpec
from jobs.resources import WorkerResources
from jobs.retry import Decision, backoff_delay, decide
from store import ledger

RESOURCES = "orrery"
"""The arq ctx key holding the process's WorkerResources."""

ARQ_TIMEOUT_MARGIN_S = 10.0
"""arq's own timeout is the job's plus this, so ours fires first and the ledger write after it still fits."""

ARQ_MAX_TRIES = 1_000_000
"""arq must never dead-letter on its own (it would drop the job without a ledger row); the runtime decides."""

logger = structlog.get_logger("orrery.jobs")

ArqCoroutine = Callable[..., Awaitable[None]]


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def _reschedule(resources: WorkerResources, job_id: str, delay_s: float, *, keep_attempt: bool) -> None:
    """Keep the job record alive until its next run; a deferral or a hand-back does not use up an attempt."""
    async with resources.redis.pipeline(transaction=False) as pipe:
        pipe.pexpire(job_key(job_id), int(delay_s * 1000) + expires_extra_ms)
        if keep_attempt:
            pipe.decr(retry_key(job_id))
        await pipe.execute()


async def run_attempt(
    spec: JobSpec, resources: WorkerResources, job_id: str, attempt: int, raw: dict[str, Any]
) -> None:
    """Run one attempt; returns when the run is finished (succeeded or dead), raises arq's Retry otherwise."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, job_name=spec.name, attempt=attempt)
    log = logger.bind(job_id=job_id, job_name=spec.name, attempt=attempt)
    started = time.perf_counter()
    try:
        run_id = await ledger.start_run(
            resources.ledger_pool, job_id=job_id, job_name=spec.name, queue=spec.queue, args=raw, attempt=attempt,
            max_tries=spec.max_tries, worker_id=resources.worker_id,
        )  # fmt: skip
    except Exception as exc:  # Postgres unreachable: leave the job queued and come back later
        delay = backoff_delay(max(spec.backoff_s, 1.0), attempt)
        log.warning("job not started: ledger unavailable", error_class=type(exc).__name__, retry_in_s=round(delay, 2))
        await _reschedule(resources, job_id, delay, keep_attempt=True)
        raise arq.worker.Retry(defer=delay) from None

    if attempt > spec.max_tries:  # only reachable when workers died mid-run on every try
        error = f"started {attempt - 1} times without finishing (worker killed each time); not trying again"
        await ledger.finish_run(
            resources.ledger_pool, run_id, state="dead", duration_ms=0, error_class="Abandoned", error=error
        )
        log.error("job dead", error_class="Abandoned", error=error)
        return

    log.info("job started")
    ctx = JobContext(
        settings=resources.settings, pool=resources.pool, redis=resources.redis, job_id=job_id, job_name=spec.name,
        attempt=attempt, log=log, resources=resources,
    )  # fmt: skip
    try:
        args = spec.args_model.model_validate(raw)
        async with asyncio.timeout(spec.timeout_s):
            result = await spec.handler(ctx, args)
    except asyncio.CancelledError:
        # The worker is stopping (shutdown grace exceeded): hand the job back; arq puts it back in the queue.
        error = "worker stopped before the job finished; handed back to the queue"
        await ledger.finish_run(
            resources.ledger_pool, run_id, state="queued", duration_ms=_elapsed_ms(started), error_class="Interrupted",
            error=error,
        )  # fmt: skip
        await _reschedule(resources, job_id, 0, keep_attempt=True)
        ctx.log.warning("job handed back", error_class="Interrupted")
        raise
    except Exception as exc:
        decision = decide(
            exc, attempt=attempt, max_tries=spec.max_tries, backoff_s=spec.backoff_s, now=datetime.now(UTC),
            timeout_s=spec.timeout_s,
        )  # fmt: skip
        await _record_failure(ctx, resources, run_id, decision, _elapsed_ms(started), exc)
        return
    duration = _elapsed_ms(started)
    summary = json.loads(wire.serialize(result)) if result is not None else None
    await ledger.finish_run(resources.ledger_pool, run_id, state="succeeded", duration_ms=duration, result=summary)
    ctx.log.info("job succeeded", duration_ms=duration)


async def _record_failure(
    ctx: JobContext, resources: WorkerResources, run_id: int, decision: Decision, duration: int, exc: Exception
) -> None:
    fields: dict[str, Any] = {"error_class": decision.error_class, "error": decision.message, "duration_ms": duration}
    if not decision.expected:
        fields["exc_info"] = exc
    if decision.action == "dead":
        await ledger.finish_run(
            resources.ledger_pool, run_id, state="dead", duration_ms=duration, error_class=decision.error_class,
            error=decision.message,
        )  # fmt: skip
        ctx.log.error("job dead", **fields)
        return
    next_run = datetime.now(UTC) + timedelta(seconds=decision.delay_s)
    state: ledger.RunState = "failed" if decision.action == "retry" else "queued"
    await ledger.finish_run(
        resources.ledger_pool, run_id, state=state, duration_ms=duration, error_class=decision.error_class,
        error=decision.message, run_at=next_run,
    )  # fmt: skip
    await _reschedule(resources, ctx.job_id, decision.delay_s, keep_attempt=decision.action == "defer")
    event = "job failed, will retry" if decision.action == "retry" else "job deferred"
    ctx.log.warning(event, retry_in_s=round(decision.delay_s, 2), **fields)
    raise arq.worker.Retry(defer=decision.delay_s) from None


def arq_function(spec: JobSpec) -> arq.worker.Function:
    """The arq function for a spec: arq passes the job's keyword arguments; validation happens in run_attempt."""

    async def entry(ctx: dict[str, Any], **raw: Any) -> None:
        await run_attempt(spec, ctx[RESOURCES], ctx["job_id"], ctx["job_try"], raw)

    entry.__qualname__ = f"job:{spec.name}"
    return arq.worker.func(
        entry,
        name=spec.name,
        timeout=spec.timeout_s + ARQ_TIMEOUT_MARGIN_S,
        keep_result=0,
        max_tries=ARQ_MAX_TRIES,
    )
