"""Cron firing: each slot of each scheduled job is enqueued by exactly one worker, however many run.

Every worker process computes the same slots; the first to `SET orrery:cron:{job}:{slot} NX` enqueues it, the others
see the key and skip. Slots are only ever in the future of the process's start, so a restart (or ten workers
starting together) fires nothing extra; slots missed while no worker ran are skipped, not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pydantic
import redis.asyncio as aioredis
import structlog

from core.backoff import equal_jitter
from core.cron import Schedule, ScheduleError, check_expression, parse_cron
from jobs.runtime import metrics
from jobs.runtime.enqueue import EnqueueResult, enqueue
from jobs.runtime.keys import cron_claim_key
from jobs.runtime.registry import JobSpec, JobTable, UnknownJobError

CLAIM_TTL_S = 7200
"""A claim outlives its slot by far more than any clock skew between workers."""
RETRY_BASE_S, RETRY_CAP_S = 0.5, 15.0
"""A slot that could not fire (Redis or Postgres away) is tried again after 0.5, 1, 2 … s, at most 15 s apart: a
store back from an outage gets its slot fired within 15 s, and a long outage costs four tries a minute, not the
hundred a second of a loop that retried at once (issue 18: 5,732 warnings in 49 s, a third of a core)."""

logger = structlog.get_logger("orrery.cron")


@dataclass(frozen=True)
class ScheduledJob:
    spec: JobSpec
    schedule: Schedule


def schedules(
    jobs: JobTable, overrides: Mapping[str, str], *, queues: Collection[str] | None = None
) -> list[ScheduledJob]:
    """The effective schedule of every job: its own cron unless overridden (Settings.cron); "off" disables one.

    An override may schedule a job that has no cron of its own if its arguments all have defaults. Every problem
    with an override is a ScheduleError naming ORRERY_CRON, so `jobs list`, `doctor` and the worker say the same line.
    """
    by_name = {spec.name: spec for spec in jobs.all() if queues is None or spec.queue in queues}
    for name in overrides:
        try:
            jobs.get(name)  # the whole table: a job of a queue this worker does not serve is fine
        except UnknownJobError as exc:
            raise ScheduleError(f"invalid configuration: ORRERY_CRON: {exc}") from None
    result = []
    for name in sorted(set(by_name) | set(overrides)):
        spec = by_name.get(name)
        if spec is None:
            continue  # a job of a queue this worker does not serve
        if name in overrides:
            try:
                schedule = check_expression(overrides[name])
            except ScheduleError as exc:
                raise ScheduleError(f"invalid configuration: ORRERY_CRON: {name!r}: {exc}") from None
        else:
            schedule = parse_cron(spec.cron) if spec.cron is not None else None
        if schedule is None:
            continue
        try:
            spec.args_model.model_validate({})
        except pydantic.ValidationError:
            raise ScheduleError(
                f"invalid configuration: ORRERY_CRON: job {name!r} needs arguments, so it cannot run on a schedule"
            ) from None
        result.append(ScheduledJob(spec, schedule))
    return result


def _error(exc: BaseException) -> dict[str, str]:
    return {"error_class": type(exc).__name__, "error": str(exc)[:200]}


def cron_job_id(spec: JobSpec, slot: datetime) -> str:
    """The dedupe key when the job has one (an overrunning run makes the next slot a no-op), else one id per slot."""
    return spec.dedupe_key or f"{spec.name}@{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"


class CronScheduler:
    """Fires due slots. `clock` is injectable so tests can drive several schedulers through the same slots."""

    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        jobs: list[ScheduledJob],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._clock = clock
        self._rng = rng
        started = clock()
        self._next = {job.spec.name: job.schedule.next_after(started) for job in jobs}
        self._failures: dict[str, int] = {}
        """Tries of the due slot that failed in a row, per job."""
        self._retry_at: dict[str, datetime] = {}
        """When the due slot of a job whose last try failed may be tried again."""
        self._jobs = jobs

    def next_runs(self) -> dict[str, datetime]:
        return dict(self._next)

    def next_wake(self) -> datetime | None:
        """The earliest moment a tick can do anything: a slot coming, or a failed slot's backoff ending."""
        due = [max(slot, self._retry_at.get(name, slot)) for name, slot in self._next.items()]
        return min(due) if due else None

    async def tick(self) -> list[EnqueueResult]:
        """Fire every job whose slot has come; returns what this scheduler enqueued.

        A slot whose claim or enqueue fails (Redis or Postgres away) stays due, its claim released, and the next
        tick tries it again, until the job's following slot has come: then the older one is given up with a warning
        and the newest due slot fires instead, so an outage never fires a backlog of slots (nor any slot twice)."""
        now = self._clock()
        fired = []
        for job in self._jobs:
            name = job.spec.name
            slot = self._next[name]
            if now < slot or now < self._retry_at.get(name, slot):
                continue
            latest = slot
            while (following := job.schedule.next_after(latest)) <= now:
                latest = following
            if latest != slot:
                logger.warning("cron slot missed", job_name=name, slot=slot.isoformat(), instead=latest.isoformat())
                self._next[name] = slot = latest
            try:
                result = await self._fire(job, slot)
            except Exception as exc:
                failures = self._failures[name] = self._failures.get(name, 0) + 1
                delay = equal_jitter(RETRY_BASE_S, failures - 1, RETRY_CAP_S, rng=self._rng)
                self._retry_at[name] = now + timedelta(seconds=delay)
                logger.warning(
                    "cron slot not fired yet; retrying",
                    job_name=name,
                    slot=slot.isoformat(),
                    tries=failures,
                    retry_in_s=round(delay, 1),
                    **_error(exc),
                )
                continue
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            self._next[name] = job.schedule.next_after(now)
            if result is not None:
                if result.enqueued:  # the metric counts slots this worker enqueued, not ones found queued already
                    metrics.cron_fired(name)
                logger.info("cron fired", job_name=name, slot=slot.isoformat(), enqueued=result.enqueued)
                fired.append(result)
        return fired

    async def _fire(self, job: ScheduledJob, slot: datetime) -> EnqueueResult | None:
        """Claim the slot and enqueue its run; None when another worker claimed it first."""
        claim = cron_claim_key(job.spec.name, slot)
        if not await self._redis.set(claim, "1", nx=True, ex=CLAIM_TTL_S):
            return None
        try:
            return await enqueue(self._redis, self._pool, job.spec, {}, job_id=cron_job_id(job.spec, slot))
        except BaseException:
            with contextlib.suppress(Exception):  # let the next tick (here or in another worker) claim it again
                await self._redis.delete(claim)
            raise

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a failed tick (Redis or Postgres down) is logged and the next one tries again."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                logger.warning("cron tick failed", **_error(exc))
            wake = self.next_wake()
            if wake is None:
                await stop.wait()
                return
            wait = (wake - self._clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(max(wait, 0.01), 1.0))
