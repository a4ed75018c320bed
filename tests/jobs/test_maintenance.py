"""Maintenance jobs against the real `public` schema: the timeout sweep, ledger pruning, expired sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
import structlog

from jobs.diagnostics import ECHO
from jobs.maintenance import (
    ExpireSessionsArgs,
    PruneLedgerArgs,
    SweepTimeoutsArgs,
    expire_sessions,
    prune_ledger,
    sweep_timeouts,
)
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.resources import WorkerResources
from store import ledger


def _ctx(resources: WorkerResources, name: str) -> JobContext:
    return JobContext(
        settings=resources.settings,
        pool=resources.pool,
        redis=resources.redis,
        job_id=name,
        job_name=name,
        attempt=1,
        log=structlog.get_logger(),
        resources=resources,
    )


def _utc(minutes_ago: float) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(tzinfo=None)


async def _conversations(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO public.users (user_id, email) VALUES ('u1', 'u1@example.com')")
    rows = [
        ("silent", "active", _utc(30), None),  # last message 15 min ago → ended
        ("talking", "active", _utc(30), None),  # last message 2 min ago → stays active
        ("no-messages", "active", _utc(12), None),  # started 12 min ago, nothing said → ended
        ("by-web-app", "ended", _utc(60), _utc(40)),  # ended by the web app → ingested too
        ("done", "processed", _utc(90), _utc(80)),
    ]
    for cid, status, start, ended in rows:
        await pool.execute(
            "INSERT INTO public.conversations (id, user_id, start_time, status, ended_at) "
            "VALUES ($1, 'u1', $2, $3, $4)",
            cid,
            start,
            status,
            ended,
        )
    for mid, cid, minutes_ago in [("m1", "silent", 20), ("m2", "silent", 15), ("m3", "talking", 2)]:
        await pool.execute(
            "INSERT INTO public.conversation_messages (id, conversation_id, role, content, timestamp) "
            "VALUES ($1, $2, 'user', 'hello', $3)",
            mid,
            cid,
            _utc(minutes_ago),
        )


async def test_sweep_ends_silent_conversations_and_enqueues_ingestion(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    await _conversations(pool)

    summary = await sweep_timeouts(_ctx(resources, "sweep_timeouts"), SweepTimeoutsArgs())

    assert summary == {"ended": 2, "ingest_enqueued": 3, "ingest_already_queued": 0}
    rows = await pool.fetch("SELECT id, status, ended_at FROM public.conversations ORDER BY id")
    status = {r["id"]: r["status"] for r in rows}
    assert status == {
        "by-web-app": "ended",
        "done": "processed",
        "no-messages": "ended",
        "silent": "ended",
        "talking": "active",
    }
    ended_at = {r["id"]: r["ended_at"] for r in rows}
    assert abs((ended_at["silent"] - _utc(15)).total_seconds()) < 5  # the last message, not the sweep time
    queued = await pool.fetch("SELECT job_id, state FROM runtime.job_runs WHERE job_name = 'ingest' ORDER BY 1")
    assert [tuple(r) for r in queued] == [
        ("ingest:by-web-app", "queued"),
        ("ingest:no-messages", "queued"),
        ("ingest:silent", "queued"),
    ]

    again = await sweep_timeouts(_ctx(resources, "sweep_timeouts"), SweepTimeoutsArgs())
    assert again == {"ended": 0, "ingest_enqueued": 0, "ingest_already_queued": 3}  # idempotent


async def test_prune_ledger_keeps_active_and_recent_runs(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    old = await enqueue(redis_client, pool, ECHO, {}, job_id="old")
    recent = await enqueue(redis_client, pool, ECHO, {}, job_id="recent")
    await enqueue(redis_client, pool, ECHO, {}, job_id="active")
    for result in (old, recent):
        assert result.run_id is not None
        await ledger.finish_run(pool, result.run_id, state="succeeded", duration_ms=1)
    await pool.execute("UPDATE runtime.job_runs SET finished_at = now() - interval '40 days' WHERE job_id = 'old'")

    summary = await prune_ledger(_ctx(resources, "prune_ledger"), PruneLedgerArgs())

    assert summary == {"deleted": 1, "retention_days": 30}
    remaining = await pool.fetch("SELECT job_id FROM runtime.job_runs ORDER BY job_id")
    assert [r["job_id"] for r in remaining] == ["active", "recent"]


async def test_expired_sessions_are_deleted(pool: asyncpg.Pool, resources: WorkerResources) -> None:
    await pool.execute("INSERT INTO public.users (user_id, email) VALUES ('u1', 'u1@example.com')")
    for sid, expires in [("gone", _utc(5)), ("valid", _utc(-60))]:
        await pool.execute(
            "INSERT INTO public.user_sessions (session_id, user_id, expires_at, last_active_at) "
            "VALUES ($1, 'u1', $2, $3)",
            sid,
            expires,
            _utc(10),
        )

    assert await expire_sessions(_ctx(resources, "expire_sessions"), ExpireSessionsArgs()) == {"deleted": 1}
    assert [r["session_id"] for r in await pool.fetch("SELECT session_id FROM public.user_sessions")] == ["valid"]
