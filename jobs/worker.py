"""The worker process: one arq Worker per queue from the registry, a one-script claim (jobs/claim.py), a lease
heartbeat, cron, and a draining stop.

Why a lease: arq marks a running job with an in-progress key that lives for the longest job timeout + 10 s, so a
worker killed with SIGKILL strands its job for that long. Here the key lives `job_lease_s` and a heartbeat refreshes
it every third of that while the job runs, so after a crash another worker takes the job over within
`job_lease_s + poll_delay_s`. A handler must therefore never block the event loop for longer than the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import arq.worker
import structlog
from arq.connections import RedisSettings
from arq.utils import timestamp_ms

from jobs import wire
from jobs.claim import QueueClaimer
from jobs.keys import health_key, in_progress_key, queue_key
from jobs.registry import JobSpec, all_jobs
from jobs.resources import WorkerResources, ledger_dsn, make_worker_id
from jobs.runtime import RESOURCES, arq_function, record_unrunnable
from jobs.scheduler import CronScheduler, CronSettings, schedules
from settings import Settings
from store.postgres import create_pool
from store.redis import connect_redis

logger = structlog.get_logger("orrery.worker")

SLOT_WAIT_S = 1.0
"""How long a poll with every slot busy waits for one to free up before it refreshes the health key and cron."""


class WorkerConfigError(Exception):
    """The worker was asked to serve nothing; the message says what."""


class OrreryWorker(arq.worker.Worker):
    """arq's Worker with a one-round-trip claim, a short, heartbeat-refreshed lease and unrunnable jobs recorded as
    dead letters."""

    def __init__(self, *, queue: str, resources: WorkerResources, lease_s: float, **kwargs: Any) -> None:
        super().__init__(queue_name=queue_key(queue), handle_signals=False, **kwargs)
        self.in_progress_timeout_s = lease_s
        self.queue = queue
        self.resources = resources
        self._claimer: QueueClaimer | None = None
        self._slot_freed = asyncio.Event()

    async def _poll_iteration(self) -> None:
        """arq's poll iteration with the one-round-trip claim of jobs/claim.py in place of ZRANGEBYSCORE and a
        WATCH/MULTI transaction per id.

        While every slot is busy it waits (up to SLOT_WAIT_S, so the health key and cron still get their turn) for
        one to free up, and takes the next job at once instead of a poll delay later."""
        if self.allow_pick_jobs and self.job_counter >= self.max_jobs:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow the stop's cancellation
                async with asyncio.timeout(SLOT_WAIT_S):
                    await self._slot_freed.wait()
        wanted = self.max_jobs - self.job_counter
        if self.burst and self.max_burst_jobs >= 0:
            wanted = min(wanted, self.max_burst_jobs - self._jobs_started())
        if self.allow_pick_jobs and wanted > 0:
            for job in await self.claimer.claim(timestamp_ms(), wanted):
                await self.sem.acquire()  # never waits: `wanted` slots are free and nothing else takes them
                self.job_counter += 1
                task = self.loop.create_task(self.run_job(job.job_id, job.score))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job.job_id] = task
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # arq's way of surfacing an error raised outside a job's own handling
        await self.heart_beat()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    @property
    def claimer(self) -> QueueClaimer:
        if self._claimer is None:  # arq opens its Redis pool in main(), after __init__
            self._claimer = QueueClaimer(self.pool, self.queue_name, lease_ms=int(self.in_progress_timeout_s * 1000))
        return self._claimer

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq calls this for jobs it cannot run at all (unknown name, unreadable record, expired): a NotRunnable dead
        letter first (jobs/runtime.py), and the job is deleted only once that is recorded."""
        if await record_unrunnable(self.resources, self.queue, job_id, result_data):
            await super().finish_failed_job(job_id, result_data)

    def running_job_ids(self) -> list[str]:
        return [job_id for job_id, task in self.tasks.items() if not task.done()]


def build_worker(
    queue: str,
    specs: Sequence[JobSpec],
    resources: WorkerResources,
    *,
    redis_url: str,
    concurrency: int,
    burst: bool,
) -> OrreryWorker:
    """The arq Worker of one queue: JSON records, our poll delay, no kept results (the ledger is the history)."""
    settings = resources.settings
    return OrreryWorker(
        queue=queue,
        resources=resources,
        lease_s=settings.job_lease_s,
        functions=[arq_function(spec) for spec in specs if spec.queue == queue],
        redis_settings=RedisSettings.from_dsn(redis_url),
        burst=burst,
        max_jobs=concurrency,
        poll_delay=settings.poll_delay_s,
        health_check_interval=settings.health_check_interval_s,
        health_check_key=health_key(queue, resources.worker_id),
        keep_result=0,
        max_tries=1,  # per-function values (runtime.ARQ_MAX_TRIES) win; the runtime decides when a job is dead
        ctx={RESOURCES: resources},
        job_serializer=wire.serialize,
        job_deserializer=wire.deserialize,
        log_results=False,
        timezone=None,
    )


async def refresh_leases(workers: Sequence[OrreryWorker], lease_s: float, stop: asyncio.Event) -> None:
    """Every lease/3, push back the expiry of every running job's in-progress key (one pipeline per tick)."""
    lease_ms = int(lease_s * 1000)
    redis = workers[0].resources.redis
    while not stop.is_set():
        running = [job_id for worker in workers for job_id in worker.running_job_ids()]
        if running:
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(in_progress_key(job_id), lease_ms)
                    await pipe.execute()
            except Exception as exc:
                logger.warning("lease refresh failed", error_class=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=lease_s / 3)


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int
    burst: bool = False


def check_served(options: WorkerOptions) -> None:
    """Refuse options that would serve no job at all."""
    if not any(spec.queue in options.queues for spec in all_jobs()):
        raise WorkerConfigError(f"no job is registered on queue(s) {', '.join(options.queues)}")


async def run_workers(settings: Settings, database_url: str, redis_url: str, options: WorkerOptions) -> None:
    """Run until SIGTERM/SIGINT (or, with burst, until every queue is empty)."""
    logging.getLogger("arq").setLevel(logging.WARNING)  # our own structured lines replace arq's per-job lines
    check_served(options)
    specs = all_jobs()
    pool = await create_pool(database_url, min_size=1, max_size=min(options.concurrency * len(options.queues), 20) + 2)
    ledger_pool = await create_pool(ledger_dsn(database_url), min_size=1, max_size=min(options.concurrency, 10) + 1)
    redis = await connect_redis(redis_url)
    resources = WorkerResources(settings, pool, redis, make_worker_id(), ledger_pool=ledger_pool)
    workers = [
        build_worker(queue, specs, resources, redis_url=redis_url, concurrency=options.concurrency, burst=options.burst)
        for queue in options.queues
        if any(spec.queue == queue for spec in specs)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background = [asyncio.create_task(refresh_leases(workers, settings.job_lease_s, stop))]
    if not options.burst:
        served = [spec for spec in specs if spec.queue in options.queues]
        scheduler = CronScheduler(redis, pool, schedules(served, CronSettings().cron))
        background.append(asyncio.create_task(scheduler.run(stop)))
    logger.info(
        "worker started", worker_id=resources.worker_id, queues=list(options.queues),
        concurrency=options.concurrency, poll_delay_s=settings.poll_delay_s, lease_s=settings.job_lease_s,
    )  # fmt: skip
    for worker in workers:
        worker.main_task = asyncio.create_task(worker.main())
    mains = [worker.main_task for worker in workers if worker.main_task is not None]
    stopping = asyncio.create_task(stop.wait())
    # burst: until every queue is empty; otherwise until a signal, or until a poll loop dies (Redis gone)
    watched: list[asyncio.Future[Any]] = [asyncio.gather(*mains)] if options.burst else list(mains)
    try:
        await asyncio.wait([*watched, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            await drain(workers, settings.shutdown_grace_s)
    finally:
        stop.set()
        for worker in workers:
            worker.handle_sig(signal.SIGTERM)  # cancels what is still running (handed back) and the poll loops
        await asyncio.gather(*mains, *background, stopping, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        await resources.aclose()
        await pool.close()
        await ledger_pool.close()
        await redis.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("worker stopped", worker_id=resources.worker_id, **_counts(workers))
    crashed = [task.exception() for task in mains if task.done() and not task.cancelled() and task.exception()]
    if crashed and crashed[0] is not None:
        raise crashed[0]


async def drain(workers: Sequence[OrreryWorker], grace_s: float) -> None:
    """Stop taking jobs, then give running ones up to `grace_s` to finish; what is left is handed back."""
    for worker in workers:
        worker.allow_pick_jobs = False
    running = sum(len(worker.running_job_ids()) for worker in workers)
    logger.info("worker draining", running=running, grace_s=grace_s)
    running_tasks = [task for worker in workers for task in worker.tasks.values() if not task.done()]
    if running_tasks:
        await asyncio.wait(running_tasks, timeout=grace_s)


def _counts(workers: Sequence[OrreryWorker]) -> dict[str, int]:
    return {
        "complete": sum(w.jobs_complete for w in workers),
        "retried": sum(w.jobs_retried for w in workers),
        "failed": sum(w.jobs_failed for w in workers),
    }
