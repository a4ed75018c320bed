"""The one dead path (`mark_dead`): the job's on_dead hook for a run that started, the dead ledger row, one "job
dead" log line; and the records arq cannot run at all, turned into NotRunnable dead letters through it.

A record that never ran calls no hook: its job did nothing, so there is nothing for the hook to clean up, and a
hook's policy for its entities (ingestion marks the conversation `failed`) would let one stray record take a real
conversation out of the sweep before any ingestion ran.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic
import structlog

from jobs.runtime import wire
from jobs.runtime.context import JobContext
from jobs.runtime.keys import UNRECORDED_DEAD_KEY, job_key
from jobs.runtime.outcomes import UNRECORDABLE, Outcome, observe, record_final, store_unreachable
from jobs.runtime.registry import JobSpec, JobTable, UnknownJobError
from jobs.runtime.resources import WorkerResources
from jobs.runtime.retry import describe
from store import ledger

UNRECORDED_DEAD_LIMIT = 1000
"""The Redis list of dead letters the ledger cannot hold keeps this many, newest first."""

logger = structlog.get_logger("orrery.jobs")


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
    """The one dead path: the job's on_dead hook for a run, the dead ledger row, one "job dead" log line.

    The hook runs before the dead row because the row ends the job id's dedupe: from then on a producer may enqueue
    the id again, and the hook is what tells producers not to (ingestion marks the conversation `failed`, which the
    timeout sweep skips). In the other order a sweep firing between the two re-enqueued a dead ingestion with a fresh
    budget of tries (tests/faults/test_poisoned_conversation.py saw a sixth LLM call for max_tries=5).

    `outcome` is the dead outcome of a run the ledger knows; None for a record that never got a run of its own (it
    cannot run, or the ledger cannot hold it as written): then `error_class`, `error` and `queue` describe it, and
    the row is written with escapes, or into the Redis list UNRECORDED_DEAD_KEY when even that is refused, and an
    unreachable store's error reaches the caller. For a run, a ledger away keeps the outcome (see _record_final).

    Why no hook for a record that never ran: its job did nothing, so there is nothing for the hook to clean up, and
    what a hook does to its entities (ingestion marks the conversation `failed`) would let one stray record (a
    producer's typo, an expired record) take a real conversation out of the sweep before any ingestion ran."""
    if outcome is not None and spec is not None:
        error_class, error = outcome.error_class or "", outcome.error or ""
        if spec.on_dead is not None:  # before the dead row: see the docstring
            await _call_dead_hook(ctx, spec, spec.on_dead, raw, error)
        await record_final(ctx, spec, outcome)
    else:
        await _record_unrunnable(ctx, spec, raw, queue=queue, error_class=error_class, error=error)
        observe(spec.name if spec is not None else "unknown", "dead", None, error_class)  # a producer's name: no label
    ctx.log.error("job dead", error_class=error_class, error=error, exc_info=exc_info)


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
    except UNRECORDABLE:
        pass
    try:
        await ledger.mark_unrunnable(ctx.resources.ledger_pool, **ledger.printable(fields))
        return
    except UNRECORDABLE as exc:
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
