"""Dispatch benchmark: Orrery's runtime against bare arq, same Redis, same process, one run.

    .venv/bin/python bench/bench_dispatch.py [--jobs 2000] [--samples 200]

Measures, for a job that does nothing:
  * throughput — a queue pre-filled with --jobs jobs, drained by one worker with 10 concurrent jobs;
  * dispatch latency — enqueue → handler start, one job at a time, with a random pause between jobs so enqueues land
    at every phase of the poll cycle (p50 / p95);
  * the ledger's share — the three ledger statements of one job (insert at enqueue, start, finish), timed alone.
Variants: Orrery (JSON records, ledger, lease, structured INFO logs rendered to /dev/null), bare arq with its default
settings (pickle, poll every 0.5 s, results kept an hour), bare arq with Orrery's poll delay. Producer and worker
share one event loop, the same for every variant. Uses DATABASE_URL / REDIS_URL when set, else a throwaway embedded
Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import arq.worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from bench_stack import bench_servers, fresh_database
from pydantic import BaseModel, ConfigDict

from jobs.catalog import JOBS
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.logs import configure_logging
from jobs.runtime.outage import StoreWatch
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import WorkerResources, ledger_dsn
from jobs.runtime.worker import WorkerOptions, build_worker
from settings import load_settings
from store import ledger
from store.postgres import create_pool as create_pg_pool
from store.redis import connect_redis

CONCURRENCY = 10
ORRERY_POLL_S = load_settings().poll_delay_s


class Probe:
    """Counts handler starts and wakes the producer; shared by every variant."""

    def __init__(self) -> None:
        self.started = 0
        self.target = 1
        self.latencies: list[float] = []
        self.event = asyncio.Event()

    def hit(self, sent_at: float) -> None:
        self.latencies.append(time.time() - sent_at)
        self.started += 1
        if self.started >= self.target:
            self.event.set()


PROBE = Probe()


class NoopArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sent_at: float = 0.0


async def _orrery_noop(ctx: JobContext, args: NoopArgs) -> None:
    PROBE.hit(args.sent_at)


NOOP = JobSpec(
    name="bench.noop",
    args_model=NoopArgs,
    handler=_orrery_noop,
    queue=INTERACTIVE,
    timeout_s=10,
    max_tries=1,
    backoff_s=0,
    dedupe_key=None,
    cron=None,
    description="Benchmark only: records when it started.",
)


async def _arq_noop(ctx: dict[str, Any], sent_at: float = 0.0) -> None:
    PROBE.hit(sent_at)


@dataclass
class Variant:
    name: str
    enqueue: Callable[[float], Awaitable[None]]
    worker: arq.worker.Worker


@dataclass
class Result:
    name: str
    throughput: float
    p50_ms: float
    p95_ms: float
    samples: int


async def _stop(worker: arq.worker.Worker, main: asyncio.Task[None]) -> None:
    """Let the jobs in flight record their ends, then stop the poll loop."""
    in_flight = [t for t in worker.tasks.values() if not t.done()]
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)
    main.cancel()
    await asyncio.gather(main, return_exceptions=True)


async def _drain(variant: Variant, jobs: int) -> float:
    for _ in range(jobs):
        await variant.enqueue(0.0)
    PROBE.started, PROBE.target = 0, jobs
    PROBE.event.clear()
    task = asyncio.create_task(variant.worker.main())
    started = time.perf_counter()
    await asyncio.wait_for(PROBE.event.wait(), 600)
    elapsed = time.perf_counter() - started
    await _stop(variant.worker, task)
    return jobs / elapsed


async def _latency(variant: Variant, samples: int, max_pause_s: float) -> list[float]:
    PROBE.latencies.clear()
    PROBE.started, PROBE.target = 0, 1
    task = asyncio.create_task(variant.worker.main())
    await asyncio.sleep(0.2)
    for _ in range(samples):
        PROBE.event.clear()
        await variant.enqueue(time.time())
        PROBE.started = 0
        await asyncio.wait_for(PROBE.event.wait(), 10)
        await asyncio.sleep(random.uniform(0, max_pause_s))
    await _stop(variant.worker, task)
    return list(PROBE.latencies)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def _measure(make: Callable[[], Awaitable[Variant]], jobs: int, samples: int, pause: float) -> Result:
    variant = await make()
    throughput = await _drain(variant, jobs)
    await variant.worker.close()
    variant = await make()
    latencies = await _latency(variant, samples, pause)
    await variant.worker.close()
    return Result(variant.name, throughput, _percentile(latencies, 0.5), _percentile(latencies, 0.95), samples)


async def _ledger_cost(pool: Any, rounds: int = 500) -> float:
    """Milliseconds per job for the ledger's three statements, run back to back on the pool."""
    started = time.perf_counter()
    for i in range(rounds):
        job_id = f"ledger-bench-{i}"
        await ledger.insert_queued(
            pool,
            job_id=job_id,
            job_name="bench.noop",
            queue=INTERACTIVE,
            args={"sent_at": 0.0},
            max_tries=1,
            run_at=datetime.now(UTC),
        )
        run = await ledger.start_run(
            pool,
            job_id=job_id,
            job_name="bench.noop",
            queue=INTERACTIVE,
            args={"sent_at": 0.0},
            attempt=1,
            max_tries=1,
            worker_id="bench",
        )
        await ledger.finish_run(pool, run.run_id, state="succeeded", duration_ms=0)
    return (time.perf_counter() - started) * 1000 / rounds


async def run(database_url: str, redis_url: str, jobs: int, samples: int) -> None:
    settings = load_settings(database_url=database_url, redis_url=redis_url)
    pool = await create_pg_pool(database_url, min_size=2, max_size=CONCURRENCY + 2)
    redis = await connect_redis(redis_url)
    ledger_pool = await create_pg_pool(ledger_dsn(database_url), min_size=2, max_size=CONCURRENCY + 1)
    resources = WorkerResources(settings, pool, redis, "bench:1", jobs=JOBS.with_jobs(NOOP), ledger_pool=ledger_pool)
    redis_settings = RedisSettings.from_dsn(redis_url)

    async def orrery() -> Variant:
        await redis.flushdb()
        spec = [NOOP]
        watch = StoreWatch(redis_client=redis, redis_url=redis_url, database_url=database_url, tolerance_s=300)
        options = WorkerOptions(queues=(INTERACTIVE,), concurrency=CONCURRENCY)
        worker = build_worker(INTERACTIVE, spec, resources, redis_url=redis_url, options=options, watch=watch)

        async def put(sent_at: float) -> None:
            await enqueue(redis, pool, NOOP, {"sent_at": sent_at})

        return Variant("Orrery (ledger, JSON, lease)", put, worker)

    def bare(name: str, **kwargs: Any) -> Callable[[], Awaitable[Variant]]:
        async def make() -> Variant:
            await redis.flushdb()
            arq_pool: ArqRedis = await create_pool(redis_settings)
            worker = arq.worker.Worker(
                functions=[arq.worker.func(_arq_noop, name="noop")],
                redis_settings=redis_settings,
                handle_signals=False,
                **kwargs,
            )

            async def put(sent_at: float) -> None:
                await arq_pool.enqueue_job("noop", sent_at)

            return Variant(name, put, worker)

        return make

    same_poll = f"bare arq, poll {ORRERY_POLL_S * 1000:g} ms"
    results = [
        await _measure(orrery, jobs, samples, 0.02),
        await _measure(bare(same_poll, poll_delay=ORRERY_POLL_S), jobs, samples, 0.02),
        await _measure(bare("bare arq, defaults (poll 500 ms)"), jobs, max(samples // 5, 20), 0.5),
    ]
    ledger_ms = await _ledger_cost(pool)
    worker_ledger_ms = await _ledger_cost(ledger_pool)
    await pool.close()
    await ledger_pool.close()
    await redis.aclose()

    print(f"\nno-op jobs: {jobs} for throughput, one worker, {CONCURRENCY} concurrent; latency = enqueue → start\n")
    print("| runtime | throughput (jobs/s) | dispatch p50 (ms) | dispatch p95 (ms) | latency samples |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.throughput:,.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.samples} |")
    print(
        f"\nOrrery throughput = {results[0].throughput / results[1].throughput:.0%} of bare arq at the same poll "
        "delay; "
        f"ledger: {ledger_ms:.2f} ms per job (insert + start + finish) with synchronous commits, "
        f"{worker_ledger_ms:.2f} ms on the worker's ledger connections (synchronous_commit=off)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    options = parser.parse_args()
    devnull = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
    real_stderr, sys.stderr = sys.stderr, devnull
    configure_logging("INFO", "json")  # the runtime's real per-job log lines, rendered and thrown away
    sys.stderr = real_stderr
    with bench_servers() as servers:
        database_url = asyncio.run(fresh_database(servers.postgres_dsn))
        asyncio.run(run(database_url, servers.redis_url, options.jobs, options.samples))


if __name__ == "__main__":
    main()
