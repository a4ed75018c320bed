"""What the job commands (`trigger`, `jobs …`) share: connections for one command, checked ids and job names, and
how a time or a ledger run is written out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from cli.common import CommandError, backends, fail, require_migrated
from cli.job_args import ArgumentParseError, parse_job_id
from jobs.catalog import JOBS
from jobs.runtime.registry import unknown_job_message
from store.ledger import JobRun
from store.postgres import Executor, connect
from store.redis import connect_redis


@asynccontextmanager
async def connections() -> AsyncIterator[tuple[asyncpg.Connection, aioredis.Redis]]:
    """Postgres (migrated, or the command stops with one line) and Redis, for one command."""
    found = backends()
    await require_migrated(found.database_url)
    conn = await connect(found.database_url)
    try:
        client = await connect_redis(found.redis_url)
        try:
            yield conn, client
        finally:
            await client.aclose()
    finally:
        await conn.close()


def iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else "-"


def run_json(run: JobRun) -> dict[str, Any]:
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in asdict(run).items()}


def checked_id(text: str, option: str) -> str:
    try:
        return parse_job_id(text, option)
    except ArgumentParseError as exc:
        fail(str(exc))


async def checked_job_name(db: Executor, name: str | None) -> str | None:
    """A --job filter: a registered job, or a name the ledger holds (a dead letter of a job no longer registered);
    anything else is one line with the close names (exit 2), not an empty list that looks like good news."""
    if name is None or name in JOBS:
        return name
    if await db.fetchval("SELECT 1 FROM runtime.job_runs WHERE job_name = $1 LIMIT 1", name) is None:
        raise CommandError(f"--job: {unknown_job_message(name, (spec.name for spec in JOBS.all()))}")
    return name
