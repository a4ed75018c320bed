"""The worker process: one arq Worker per queue of its job table, a one-script claim (jobs/runtime/queue.py), a
lease heartbeat, cron, a draining stop, and a poll loop that outlives store outages (jobs/runtime/outage.py) and
failed job tasks.

Why a lease: arq marks a running job with an in-progress key that lives for the longest job timeout + 10 s, so a
worker killed with SIGKILL strands its job for that long. Here the key lives `job_lease_s` and a heartbeat refreshes
it every third of that while the job runs, so after a crash another worker takes the job over within
`job_lease_s + poll_delay_s`. A handler must therefore never block the event loop for longer than the lease.

Why a poll loop of our own (`main`): arq's ends on the first Redis error, and in burst mode it waits until the queue
is empty, which a job deferred for a year never lets happen. Here a Redis error pauses claiming until the StoreWatch
sees Redis again, and burst mode ends once no job is due within `burst_horizon_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from jobs.runtime import loop as event_loop
from jobs.runtime import metrics, tracing, wire
from jobs.runtime.arq_seam import OrreryWorker, RedisSettings
from jobs.runtime.attempt import RESOURCES, arq_function
from jobs.runtime.dead import record_unrunnable
from jobs.runtime.keys import health_key, in_progress_key, queue_key
from jobs.runtime.outage import POSTGRES_ERRORS, StoreOutage, StoreWatch
from jobs.runtime.queue import QueueClaimer
from jobs.runtime.registry import JobSpec, JobTable
from jobs.runtime.resources import Resource, WorkerResources, ledger_dsn, make_worker_id
from jobs.runtime.scheduler import CronScheduler, schedules
from settings import Settings
from store.migrate import schema_problem
from store.postgres import connect, create_pool, redact_url
from store.redis import connect_redis

logger = structlog.get_logger("orrery.worker")


class WorkerConfigError(Exception):
    """The worker was asked to serve nothing; the message says what."""


DEFAULT_BURST_HORIZON_S = 60.0
"""Burst mode waits for jobs due within this (retries in their backoff, jobs enqueued with a short --in) and leaves
later ones queued, saying so."""


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int
    burst: bool = False
    burst_horizon_s: float = DEFAULT_BURST_HORIZON_S
    serve_metrics: bool = True
    """Serve settings.metrics_port from this process; False in a --processes child (the parent serves them all)."""


def build_worker(
    queue: str,
    specs: Sequence[JobSpec],
    resources: WorkerResources,
    *,
    redis_url: str,
    options: WorkerOptions,
    watch: StoreWatch,
) -> OrreryWorker:
    """The arq Worker of one queue: JSON records, our poll delay, no kept results (the ledger is the history)."""
    settings = resources.settings

    async def on_unrunnable(job_id: str, result_data: bytes | None) -> bool:
        return await record_unrunnable(resources, queue, job_id, result_data)

    return OrreryWorker(
        queue=queue,
        queue_name=queue_key(queue),
        resources=resources,
        make_claimer=lambda redis, queue_name, lease_ms: QueueClaimer(redis, queue_name, lease_ms=lease_ms),
        on_unrunnable=on_unrunnable,
        lease_s=settings.job_lease_s,
        watch=watch,
        burst_horizon_s=options.burst_horizon_s,
        functions=[arq_function(spec) for spec in specs if spec.queue == queue],
        redis_settings=RedisSettings.from_dsn(redis_url),
        burst=options.burst,
        max_jobs=options.concurrency,
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


def check_served(options: WorkerOptions, jobs: JobTable) -> None:
    """Refuse options that would serve no job at all."""
    if not any(spec.queue in options.queues for spec in jobs.all()):
        raise WorkerConfigError(f"no job is registered on queue(s) {', '.join(options.queues)}")


async def check_ready(settings: Settings, database_url: str, options: WorkerOptions, jobs: JobTable) -> None:
    """Refuse to start, with one line, a worker that could only fail: on a database that is not migrated (or was
    migrated by an older or newer Orrery), or serving jobs whose resources the settings cannot open (no LLM).

    Why here and not at the first job: on an unmigrated database a worker used to start, count as live in `health`,
    and log a failed cron slot every 10 ms; with no LLM configured it answered real users from the sample fixtures."""
    check_served(options, jobs)
    served = [spec for spec in jobs.all() if spec.queue in options.queues]
    for resource in dict.fromkeys(resource for spec in served for resource in spec.resources):
        problem = resource.problem(settings) if resource.problem is not None else None
        if problem is not None:
            needing = ", ".join(spec.name for spec in served if resource in spec.resources)
            raise WorkerConfigError(f"{problem} (jobs {needing} need it)")
    conn = await connect(database_url)
    try:
        problem = await schema_problem(conn)
    finally:
        await conn.close()
    if problem is not None:
        raise WorkerConfigError(problem)


async def run_workers(
    settings: Settings, database_url: str, redis_url: str, options: WorkerOptions, jobs: JobTable
) -> None:
    """Run the jobs of `jobs` (jobs/catalog.py's table, or a test's) until SIGTERM/SIGINT (or, with burst, until no
    job is due within the horizon).

    Raises StoreOutage when Redis or Postgres stays away longer than settings.outage_tolerance_s."""
    logging.getLogger("arq").setLevel(logging.WARNING)  # our own structured lines replace arq's per-job lines
    await check_ready(settings, database_url, options, jobs)
    specs = jobs.all()
    cron_jobs = [] if options.burst else schedules(jobs, settings.cron, queues=options.queues)  # fails before any pool
    served = None
    if settings.metrics_port and options.serve_metrics:
        try:
            served = metrics.serve(settings.metrics_port, database_url, redis_url, options.queues)
        except metrics.MetricsPortError as exc:
            raise WorkerConfigError(str(exc)) from None
    traced = tracing.start(settings)
    pool = await create_pool(database_url, min_size=1, max_size=min(options.concurrency * len(options.queues), 20) + 2)
    ledger_pool = await create_pool(ledger_dsn(database_url), min_size=1, max_size=min(options.concurrency, 10) + 1)
    redis = await connect_redis(redis_url)
    resources = WorkerResources(settings, pool, redis, make_worker_id(), jobs=jobs, ledger_pool=ledger_pool)
    watch = StoreWatch(
        redis_client=redis, redis_url=redis_url, database_url=database_url, tolerance_s=settings.outage_tolerance_s
    )
    workers = [
        build_worker(queue, specs, resources, redis_url=redis_url, options=options, watch=watch)
        for queue in options.queues
        if any(spec.queue == queue for spec in specs)
    ]
    for worker in workers:
        worker.burst_peers = workers
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(watch.run(stop))
    warming = resources.start_warming(to_warm(settings, specs, options.queues))
    background = [asyncio.create_task(refresh_leases(workers, settings.job_lease_s, stop))]
    if cron_jobs:
        scheduler = CronScheduler(redis, pool, cron_jobs)
        background.append(asyncio.create_task(_once_warm(warming, lambda: scheduler.run(stop))))
    if settings.llm_is_scripted and any(spec.queue in options.queues and spec.resources for spec in specs):
        logger.warning("LLM: scripted sample answers (ORRERY_LLM=scripted): for the demo and tests only")
    logger.info(
        "worker started",
        worker_id=resources.worker_id,
        llm="scripted" if settings.llm_is_scripted else redact_url(settings.openai_base_url or "api.openai.com"),
        queues=list(options.queues),
        concurrency=options.concurrency,
        event_loop=event_loop.running_loop_name(),
        poll_delay_s=settings.poll_delay_s,
        lease_s=settings.job_lease_s,
        outage_tolerance_s=settings.outage_tolerance_s,
    )
    for worker in workers:
        worker.main_task = asyncio.create_task(worker.main())
    mains = [worker.main_task for worker in workers if worker.main_task is not None]
    stopping = asyncio.create_task(stop.wait())
    # burst: until no queue has a job due soon; otherwise until a signal; either way until a store stays away too
    # long, or a poll loop ends on a bug (a store outage never ends it)
    watched: list[asyncio.Future[Any]] = [asyncio.gather(*mains)] if options.burst else list(mains)
    failed_warming = asyncio.create_task(_warming_failed(warming))
    signalled = False
    try:
        await asyncio.wait([*watched, stopping, watching, failed_warming], return_when=asyncio.FIRST_COMPLETED)
        signalled = stop.is_set()
        if failed_warming.done():
            pass  # stop at once: nothing was claimed while warming
        elif stop.is_set():
            await drain(workers, settings.shutdown_grace_s)
        elif options.burst and all(task.done() for task in mains):
            await _report_left_queued(workers, options.burst_horizon_s)
    finally:
        stop.set()
        for worker in workers:
            worker.handle_sig(signal.SIGTERM)  # cancels what is still running (handed back) and the poll loops
        failed_warming.cancel()
        await asyncio.gather(*mains, *background, stopping, watching, failed_warming, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        await resources.aclose()
        await _close_pool(pool)
        await _close_pool(ledger_pool)
        await redis.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if served is not None:
            served.close()
        if traced is not None:
            traced.shutdown()  # sends the spans still batched
    logger.info("worker stopped", worker_id=resources.worker_id, **_counts(workers))
    if warming is not None and warming.done() and not warming.cancelled() and warming.exception() is not None:
        raise WorkerConfigError(f"could not get ready to take work: {warming.exception()}")
    if watching.done() and not watching.cancelled() and watching.exception() is not None:
        ended = watching.exception()
        if isinstance(ended, StoreOutage):
            raise StoreOutage(str(ended))
        raise RuntimeError(f"the store watch ended on {ended!r}") from ended  # never a silent exit 0
    crashed = [task.exception() for task in mains if task.done() and not task.cancelled() and task.exception()]
    if crashed and crashed[0] is not None:
        raise crashed[0]
    if not signalled and not options.burst and any(task.cancelled() for task in mains):
        raise RuntimeError("a queue's poll loop was cancelled without a stop signal")  # never a silent exit 0


def to_warm(settings: Settings, specs: Sequence[JobSpec], queues: Sequence[str]) -> list[Resource[Any]]:
    """The resources a worker opens before it takes work: those the served jobs declare whose `warm` says so."""
    wanted: dict[Resource[Any], None] = {}
    for spec in specs:
        if spec.queue in queues:
            wanted.update((r, None) for r in spec.resources if r.warm is not None and r.warm(settings))
    return list(wanted)


async def _once_warm(warming: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once warming is over (at once when there is none); never if it failed: a worker that is not ready
    fires no cron slot either (the jobs it would enqueue would wait, and a slot is fired once for the whole fleet)."""
    if warming is not None:
        await asyncio.wait({warming})
        if warming.cancelled() or warming.exception() is not None:
            return
    await work()


async def _warming_failed(task: asyncio.Task[None] | None) -> None:
    """Return only when warming fails (the worker then stops and says why); wait for ever while it goes well."""
    if task is not None:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            return
    await asyncio.Event().wait()


async def _report_left_queued(workers: Sequence[OrreryWorker], horizon_s: float) -> None:
    """One line saying what a burst leaves behind: jobs per queue and when the next one is due."""
    left: dict[str, str] = {}
    for worker in workers:
        count = int(await worker.pool.zcard(worker.queue_name))
        if count:
            first = await worker.pool.zrange(worker.queue_name, 0, 0, withscores=True)
            due = datetime.fromtimestamp(first[0][1] / 1000, UTC) if first else None
            left[worker.queue] = f"{count} (next due {due:%Y-%m-%dT%H:%M:%SZ})" if due else str(count)
    if left:
        logger.info(
            f"burst finished; jobs not due within {horizon_s:g} s stay queued: "
            + ", ".join(f"{queue} {text}" for queue, text in left.items()),
            left_queued=left,
        )
    else:
        logger.info("burst finished; the queues are empty")


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close a pool, or drop its connections when Postgres is away and a graceful close would wait on it."""
    try:
        async with asyncio.timeout(5):
            await pool.close()
    except POSTGRES_ERRORS:  # TimeoutError included
        pool.terminate()


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
