"""Cron-driven maintenance: end silent conversations and queue their ingestion, prune the ledger, drop sessions.

The hourly cycle dispatcher (users whose growth cycle is due → insight jobs) arrives with the cycle-agents issue.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from jobs import ingestion
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH, INTERACTIVE
from jobs.runtime.registry import JobSpec
from store import ledger
from store.postgres import Executor
from store.repos import conversations, user_sessions


class SweepTimeoutsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_minutes: float | None = Field(None, gt=0, description="Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES.")
    limit: int = Field(500, ge=1, le=10_000, description="Conversations ended and enqueued per run at most.")


@dataclass(frozen=True)
class SweepResult:
    ended: int
    ingest_job_ids: list[str]  # one per ended conversation, whether enqueued now or already queued/running
    ingest_enqueued: int


async def end_and_enqueue_ingestion(
    pool: Executor, redis: aioredis.Redis, *, timeout_minutes: float, limit: int
) -> SweepResult:
    """End conversations silent for longer than the timeout, then enqueue ingestion of every `ended` one.

    Idempotent: ending is a conditional update (only `active` rows change), and ingestion is enqueued under its
    dedupe key `ingest:{conversation_id}`, so a conversation already queued or running is not enqueued twice; a
    repeated sweep finds nothing new to end and enqueues nothing new. The cron job and the demo both run this.

    Each enqueue checks again that the conversation still waits (`still_wanted`): a `processing` conversation read
    here may belong to an ingestion going dead right now, which marks it `failed` and then frees its job id. Without
    the check, an enqueue landing after both started a dead ingestion over with a fresh budget of tries (LLM calls).
    """
    ended = await conversations.end_silent_conversations(pool, timeout_minutes=timeout_minutes, limit=limit)
    job_ids: list[str] = []
    enqueued = 0
    for conversation_id in await conversations.ended_conversation_ids(pool, limit=limit):
        still_waiting = functools.partial(conversations.awaits_ingestion, conversation_id=conversation_id)
        result = await enqueue(
            redis, pool, ingestion.INGEST, {"conversation_id": conversation_id}, still_wanted=still_waiting
        )
        job_ids.append(result.job_id)
        enqueued += result.enqueued
    return SweepResult(len(ended), job_ids, enqueued)


async def sweep_timeouts(ctx: JobContext, args: SweepTimeoutsArgs) -> Mapping[str, Any]:
    """The cron face of `end_and_enqueue_ingestion` (idempotent for the reasons given there)."""
    minutes = args.timeout_minutes or ctx.settings.conversation_timeout_minutes
    swept = await end_and_enqueue_ingestion(ctx.pool, ctx.redis, timeout_minutes=minutes, limit=args.limit)
    if swept.ended or swept.ingest_enqueued:
        ctx.log.info("conversations swept", ended=swept.ended, ingest_enqueued=swept.ingest_enqueued)
    return {
        "ended": swept.ended,
        "ingest_enqueued": swept.ingest_enqueued,
        "ingest_already_queued": len(swept.ingest_job_ids) - swept.ingest_enqueued,
    }


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
    return {"deleted": await user_sessions.delete_expired_sessions(ctx.pool)}


SWEEP_TIMEOUTS = JobSpec(
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
PRUNE_LEDGER = JobSpec(
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
EXPIRE_SESSIONS = JobSpec(
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
