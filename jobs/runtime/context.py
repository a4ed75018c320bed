"""JobContext: what a handler gets besides its arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from settings import Settings

if TYPE_CHECKING:
    from jobs.runtime.enqueue import EnqueueResult
    from jobs.runtime.registry import JobSpec
    from jobs.runtime.resources import Resource, WorkerResources

R = TypeVar("R")


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

    spec: JobSpec | None = field(default=None, repr=False)
    """The job being run; None only for a dead letter of a job no table knows."""

    async def resource(self, resource: Resource[R]) -> R:
        """The worker process's instance of a resource this job declared (JobSpec.resources), opened on first use
        and closed when the worker stops. Asking for an undeclared one is a bug in the job, refused at once."""
        if self.spec is not None and resource not in self.spec.resources:
            raise RuntimeError(
                f"job {self.job_name!r} uses resource {resource.name!r} without declaring it in JobSpec.resources"
            )
        return await self.resources.get(resource)

    async def enqueue(
        self,
        job: JobSpec | str,
        args: Mapping[str, Any],
        *,
        job_id: str | None = None,
        queue: str | None = None,
        defer_by: timedelta | None = None,
        run_at: datetime | None = None,
    ) -> EnqueueResult:
        """Enqueue a follow-up job (same validation, dedupe and ledger as every other enqueue); a name is looked up in
        the worker's job table."""
        from jobs.runtime.enqueue import enqueue

        if isinstance(job, str):
            if self.resources.jobs is None:
                raise RuntimeError(f"no job table to look {job!r} up in; pass the JobSpec")
            job = self.resources.jobs.get(job)
        return await enqueue(
            self.redis, self.pool, job, args, job_id=job_id, queue=queue, defer_by=defer_by, run_at=run_at
        )
