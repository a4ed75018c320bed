"""JobContext: what a handler gets besides its arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from settings import Settings

if TYPE_CHECKING:
    from agents.llm import LLMClient
    from jobs.enqueue import EnqueueResult
    from jobs.resources import WorkerResources


@dataclass
class JobContext:
    """One attempt of one job. `log` is already bound with job_id, job_name and attempt; call `bind(user_id=…)`
    once the handler knows the user, so that every later line (its own and the agents') carries it."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    job_id: str
    job_name: str
    attempt: int
    log: FilteringBoundLogger
    resources: WorkerResources = field(repr=False)

    def bind(self, **values: Any) -> None:
        """Add fields (user_id, conversation_id) to this attempt's log lines, including loggers further down."""
        self.log = self.log.bind(**values)
        structlog.contextvars.bind_contextvars(**values)

    async def llm(self) -> LLMClient:
        """The worker process's LLM client, opened on first use and closed when the worker stops."""
        return await self.resources.llm()

    async def enqueue(
        self,
        name: str,
        args: Mapping[str, Any],
        *,
        job_id: str | None = None,
        queue: str | None = None,
        defer_by: timedelta | None = None,
        run_at: datetime | None = None,
    ) -> EnqueueResult:
        """Enqueue a follow-up job (same validation, dedupe and ledger as every other enqueue)."""
        from jobs.enqueue import enqueue

        return await enqueue(
            self.redis, self.pool, name, args, job_id=job_id, queue=queue, defer_by=defer_by, run_at=run_at
        )
