"""The one seam to arq: every use of arq's private API lives here, pinned by tests/jobs/test_arq_seam.py.

Orrery is built on arq (queues as Redis sorted sets, job records, retries, the in-progress key as a claim) but
replaces parts of its Worker: the claim (one Lua round trip, jobs/runtime/queue.py), the lease (a short
`in_progress_timeout_s` refreshed by a heartbeat), the poll loop (it outlives store outages), and the recording of
jobs arq cannot run. Those replacements override private methods and attributes (`_poll_iteration`,
`_release_sem_dec_counter_on_complete`, `_cancel_aborted_jobs`, `_jobs_started`, `_last_health_check`, `sem`,
`job_counter`, `tasks`, `in_progress_timeout_s`) and write arq's key formats from Lua (`arq:job:`, `arq:in-progress:`,
`arq:retry:`). An arq upgrade that changes any of them must fail in one place: the pin test, not in production.
arq 0.28 is what this was written and tested against.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import arq.worker
import structlog
from arq.connections import RedisSettings
from arq.connections import create_pool as create_arq_pool
from arq.constants import (
    expires_extra_ms,
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.cron import next_cron
from arq.utils import poll, timestamp_ms
from arq.worker import Function, Retry

from jobs.runtime.outage import REDIS, REDIS_ERRORS, StoreWatch

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from jobs.runtime.queue import QueueClaimer
    from jobs.runtime.resources import WorkerResources

__all__ = [
    "ARQ_VERSION",
    "Function",
    "OrreryWorker",
    "RedisSettings",
    "Retry",
    "expires_extra_ms",
    "function",
    "health_check_key_suffix",
    "in_progress_key_prefix",
    "job_key_prefix",
    "next_cron",
    "retry_key_prefix",
    "timestamp_ms",
]

ARQ_VERSION = "0.28"
"""The arq minor version the overrides below were written against (pyproject pins arq==0.28.*)."""

logger = structlog.get_logger("orrery.worker")

SLOT_WAIT_S = 1.0
"""How long a poll with every slot busy waits for one to free up before it refreshes the health key and cron."""


def function(entry: Any, *, name: str, timeout_s: float, max_tries: int) -> Function:
    """An arq function that keeps no result (the ledger is the history)."""
    return arq.worker.func(entry, name=name, timeout=timeout_s, keep_result=0, max_tries=max_tries)


class OrreryWorker(arq.worker.Worker):
    """arq's Worker with a one-round-trip claim, a short, heartbeat-refreshed lease, unrunnable jobs recorded as
    dead letters, and a poll loop that pauses while a store is away instead of dying."""

    def __init__(
        self,
        *,
        queue: str,
        queue_name: str,
        resources: WorkerResources,
        lease_s: float,
        watch: StoreWatch,
        make_claimer: Callable[[ArqRedis, str, int], QueueClaimer],
        on_unrunnable: Callable[[str, bytes | None], Awaitable[bool]],
        burst_horizon_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(queue_name=queue_name, handle_signals=False, **kwargs)
        self.in_progress_timeout_s = lease_s  # arq's in-progress key lifetime, used as the lease
        self.queue = queue
        self.resources = resources
        self.watch = watch
        self.make_claimer = make_claimer
        self.burst_peers: list[OrreryWorker] = []
        """In burst mode, every worker of the process (this one included): the burst ends when all are idle."""
        self.on_unrunnable = on_unrunnable
        self.burst_horizon_s = burst_horizon_s
        self._claimer: QueueClaimer | None = None
        self._slot_freed = asyncio.Event()

    async def main(self) -> None:
        """Poll until cancelled (or, in burst mode, until nothing is due within the horizon); a Redis error pauses
        claiming (the StoreWatch decides when to resume, or to give up) instead of ending the loop."""
        if self._pool is None:
            self._pool = await create_arq_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self.ctx["redis"] = self.pool
        async for _ in poll(self.poll_delay_s):
            try:
                await self._poll_iteration()
                if self.burst and await self._burst_done():
                    return
            except REDIS_ERRORS as exc:
                self.watch.failed(REDIS, exc)

    async def _burst_done(self) -> bool:
        """Nothing runs in this process, both stores answer, and no job of any queue it serves is due within the
        horizon (a retry due sooner is waited for; a job deferred further is left queued and reported by
        run_workers). Every queue of the process is checked, not only this one: a job running on one queue may
        enqueue a follow-up on another (ingestion → sync), which must run before the burst ends."""
        peers = self.burst_peers or [self]
        if any(peer.tasks for peer in peers) or not self.watch.healthy:
            return False
        horizon_ms = timestamp_ms() + int(self.burst_horizon_s * 1000)
        for peer in peers:
            if int(await self.pool.zcount(peer.queue_name, "-inf", horizon_ms)):
                return False
        return not any(peer.tasks for peer in peers)

    async def _poll_iteration(self) -> None:
        """arq's poll iteration with the one-round-trip claim of jobs/runtime/queue.py in place of ZRANGEBYSCORE and a
        WATCH/MULTI transaction per id; no claim while a store is away.

        While every slot is busy it waits (up to SLOT_WAIT_S, so the health key and cron still get their turn) for
        one to free up, and takes the next job at once instead of a poll delay later."""
        if not self.watch.healthy:
            self._reap_finished()
            await self.watch.wait_healthy(SLOT_WAIT_S)
            if not self.watch.is_away(REDIS):
                await self.heart_beat()  # Postgres away: the health key says "degraded"
            return
        if self.resources.warming:
            await self.resources.wait_warm(SLOT_WAIT_S)
            await self.heart_beat()  # the health key says "warming"
            return
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
                if self._still_running(job.job_id):
                    continue
                await self.sem.acquire()  # never waits: `wanted` slots are free and nothing else takes them
                self.job_counter += 1
                task = self.loop.create_task(self.run_job(job.job_id, job.score))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job.job_id] = task
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        self._reap_finished()
        await self.heart_beat()

    def _still_running(self, job_id: str) -> bool:
        """Whether this worker is still running `job_id`, whose lease it has just claimed again: the lease lapsed while
        the run went on (an event loop stalled past it). The claim's fresh lease is simply the running job's again,
        and the heartbeat keeps it; starting a second run beside the first would run every step twice."""
        task = self.tasks.get(job_id)
        if task is None or task.done():
            return False
        logger.warning("lease lapsed while the job ran here; kept the one run", job_id=job_id, queue=self.queue)
        return True

    def _reap_finished(self) -> None:
        """Forget finished job tasks. An exception that escaped one (arq's own Redis calls around the job, say) is
        logged with the job id and never ends the poll loop: the job's record and lease stay in Redis, so once the
        lease lapses the job is claimed again."""
        for job_id, task in list(self.tasks.items()):
            if not task.done():
                continue
            del self.tasks[job_id]
            if task.cancelled() or task.exception() is None:
                continue
            exc = task.exception()
            fields = {"job_id": job_id, "queue": self.queue, "error_class": type(exc).__name__, "error": str(exc)[:300]}
            if isinstance(exc, REDIS_ERRORS):  # arq's own Redis calls around the job, during an outage
                self.watch.failed(REDIS, exc)
                logger.warning("job task cut short by a Redis outage; it runs again once its lease lapses", **fields)
            else:
                logger.error(
                    "job task failed outside the runtime's handling; it runs again once its lease lapses",
                    exc_info=exc,
                    **fields,
                )

    async def record_health(self) -> None:
        """arq's health line, led by the StoreWatch's status (`ok`, or `degraded: Postgres unreachable for 12 s`) or,
        while the process opens what its jobs need before taking work, `warming: opening embedder`; `run.py health`
        reads it."""
        now = time.time()
        if now - self._last_health_check < self.health_check_interval:
            return
        self._last_health_check = now
        ongoing = sum(not task.done() for task in self.tasks.values())
        queued = await self.pool.zcard(self.queue_name)
        status = self.watch.status()
        if status == "ok" and self.resources.warming:
            status = f"warming: opening {', '.join(self.resources.warming)}"
        info = (
            f"{status} {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} j_complete={self.jobs_complete} "
            f"j_failed={self.jobs_failed} j_retried={self.jobs_retried} j_ongoing={ongoing} queued={queued}"
        )
        await self.pool.psetex(self.health_check_key, int((self.health_check_interval + 1) * 1000), info.encode())

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    @property
    def claimer(self) -> QueueClaimer:
        if self._claimer is None:  # arq opens its Redis pool in main(), after __init__
            self._claimer = self.make_claimer(self.pool, self.queue_name, int(self.in_progress_timeout_s * 1000))
        return self._claimer

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq calls this for jobs it cannot run at all (unknown name, unreadable record, expired): a NotRunnable dead
        letter first (jobs/runtime/attempt.py), and the job is deleted only once that is recorded."""
        if await self.on_unrunnable(job_id, result_data):
            await super().finish_failed_job(job_id, result_data)

    def running_job_ids(self) -> list[str]:
        return [job_id for job_id, task in self.tasks.items() if not task.done()]
