"""Cron-driven maintenance: end silent conversations and queue their ingestion, prune the ledger, drop sessions.

The hourly cycle dispatcher (users whose growth cycle is due → insight jobs) arrives with the cycle-agents issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.context import JobContext
from jobs.keys import BATCH, INTERACTIVE
from jobs.registry import JobSpec, UnknownJobError, get_job, register
from store import ledger, sweeps

INGEST_JOB = "ingest"


class SweepTimeoutsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_minutes: float | None = Field(None, gt=0, description="Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES.")
    limit: int = Field(500, ge=1, le=10_000, description="Conversations ended and enqueued per run at most.")


async def sweep_timeouts(ctx: JobContext, args: SweepTimeoutsArgs) -> Mapping[str, Any]:
    """End conversations silent for longer than the timeout, then enqueue ingestion of every `ended` one.

    Idempotent: ending is a conditional update (only `active` rows change), and ingestion is enqueued under its
    dedupe key `ingest:{conversation_id}`, so a conversation already queued or running is not enqueued twice; a
    repeated sweep finds nothing new to end and enqueues nothing new.
    """
    minutes = args.timeout_minutes or ctx.settings.conversation_timeout_minutes
    ended = await sweeps.end_silent_conversations(ctx.pool, timeout_minutes=minutes, limit=args.limit)
    try:
        get_job(INGEST_JOB)
    except UnknownJobError:
        ctx.log.warning("ingestion job not registered; ended conversations wait for it", ended=len(ended))
        return {"ended": len(ended), "ingest_enqueued": 0, "ingest_already_queued": 0}
    enqueued = already = 0
    for conversation_id in await sweeps.ended_conversation_ids(ctx.pool, limit=args.limit):
        result = await ctx.enqueue(INGEST_JOB, {"conversation_id": conversation_id})
        enqueued += result.enqueued
        already += not result.enqueued
    if ended or enqueued:
        ctx.log.info("conversations swept", ended=len(ended), ingest_enqueued=enqueued)
    return {"ended": len(ended), "ingest_enqueued": enqueued, "ingest_already_queued": already}


class PruneLedgerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retention_days: int | None = Field(None, ge=1, description="Default: ORRERY_LEDGER_RETENTION_DAYS.")


async def prune_ledger(ctx: JobContext, args: PruneLedgerArgs) -> Mapping[str, Any]:
    """Delete finished ledger rows (succeeded and dead) older than the retention.

    Idempotent: a delete by age; running it twice deletes nothing the second time. Active runs are never touched.
    """
    days = args.retention_days or ctx.settings.ledger_retention_days
    return {"deleted": await ledger.prune_finished(ctx.pool, older_than_days=days), "retention_days": days}


class ExpireSessionsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def expire_sessions(ctx: JobContext, args: ExpireSessionsArgs) -> Mapping[str, Any]:
    """Delete user_sessions past their expires_at.

    Idempotent: a delete by time; an expired session stays expired, a second run finds nothing.
    """
    return {"deleted": await sweeps.delete_expired_sessions(ctx.pool)}


register(
    JobSpec(
        name="sweep_timeouts",
        args_model=SweepTimeoutsArgs,
        handler=sweep_timeouts,
        queue=INTERACTIVE,  # it feeds ingestion; a long batch job must not hold it back
        timeout_s=50,
        max_tries=1,  # the next minute's run is the retry
        backoff_s=0,
        dedupe_key="sweep_timeouts",
        cron="* * * * *",
        description="End conversations silent past the timeout and enqueue ingestion of every ended one.",
    )
)
register(
    JobSpec(
        name="prune_ledger",
        args_model=PruneLedgerArgs,
        handler=prune_ledger,
        queue=BATCH,
        timeout_s=300,
        max_tries=3,
        backoff_s=30,
        dedupe_key="prune_ledger",
        cron="17 3 * * *",
        description="Delete job ledger rows finished longer ago than the retention.",
    )
)
register(
    JobSpec(
        name="expire_sessions",
        args_model=ExpireSessionsArgs,
        handler=expire_sessions,
        queue=BATCH,
        timeout_s=120,
        max_tries=3,
        backoff_s=30,
        dedupe_key="expire_sessions",
        cron="7 * * * *",
        description="Delete expired user sessions.",
    )
)
