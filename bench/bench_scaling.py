"""Scaling benchmark: dispatch and ingestion throughput with 1, 2 and 4 workers on one Redis and one Postgres.

    .venv/bin/python bench/bench_scaling.py [--workers 1,2,4] [--jobs 3000] [--conversations 300] [--rounds 3]

Each worker is a separate `run.py worker --burst` process, as each machine or container replica runs one: its own
pools, lease heartbeat and health key, sharing the queues through Redis only. For every worker count N, N such
processes, each with 10 jobs in flight (the default ORRERY_WORKER_CONCURRENCY), work off a backlog queued
beforehand, timed by the ledger from the first backlog job's start to the last one's finish:
  * dispatch: --jobs `diag.echo` jobs that do nothing (the runtime's own cost: claim, ledger, lease, logs);
  * ingestion: --conversations queued `ingest` jobs (one user and six messages each, as in bench_ingest.py)
    answered by a zero-latency LLM in its own process.
The backlog becomes due only after the workers warmed up on 20 jobs of their own. Postgres, Redis, the LLM server
and the workers all share this machine's cores, so past one worker per core the figures say what the machine, not
the design, allows. Medians of --rounds. Uses DATABASE_URL / REDIS_URL when set, else a throwaway embedded Postgres
and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ingest import ANSWER, BACKLOG_DELAY_S, _make_conversations, redis_flush
from bench_stack import bench_servers, fresh_database
from instant_llm import instant_llm

from jobs.diagnostics import ECHO
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.logs import configure_logging
from jobs.runtime.registry import JobSpec
from store.postgres import create_pool
from store.redis import connect_redis

ROOT = Path(__file__).resolve().parent.parent
PER_WORKER_CONCURRENCY = 10
WARMUP_JOBS = 20
ENQUEUERS = 10
"""Producers queueing a backlog at once (it is queued before the workers start, so this only saves time)."""

Enqueuer = Callable[[list[dict[str, str]], datetime | None], Awaitable[list[str]]]


def _enqueuer(database_url: str, redis_url: str, spec: JobSpec) -> Enqueuer:
    """Queue one `spec` job per argument dict, due at `run_at`; returns the job ids."""

    async def queue(arguments: list[dict[str, str]], run_at: datetime | None) -> list[str]:
        pool = await create_pool(database_url, max_size=ENQUEUERS)
        redis = await connect_redis(redis_url)
        remaining = iter(arguments)
        ids: list[str] = []

        async def producer() -> None:
            for args in remaining:
                ids.append((await enqueue(redis, pool, spec, args, run_at=run_at)).job_id)

        try:
            await asyncio.gather(*(producer() for _ in range(ENQUEUERS)))
            return ids
        finally:
            await redis.aclose()
            await pool.close()

    return queue


async def timed_backlog(
    database_url: str,
    queue: Enqueuer,
    warmup: list[dict[str, str]],
    backlog: list[dict[str, str]],
    workers: int,
    env: dict[str, str],
) -> float:
    """Queue the warm-up jobs (due now) and the backlog (due in BACKLOG_DELAY_S), run `workers` burst workers until
    both are done, and return the seconds from the first backlog job's start to the last one's finish."""
    warmup_ids = await queue(warmup, None)
    due = datetime.now(UTC) + timedelta(seconds=BACKLOG_DELAY_S)
    backlog_ids = await queue(backlog, due)
    if datetime.now(UTC) > due - timedelta(seconds=BACKLOG_DELAY_S / 2):
        raise SystemExit(f"queueing the backlog took over {BACKLOG_DELAY_S / 2} s; make it smaller")
    command = [sys.executable, str(ROOT / "run.py"), "worker", "--burst", "--queue", INTERACTIVE]
    command += ["--concurrency", str(PER_WORKER_CONCURRENCY)]
    procs = [
        await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
        for _ in range(workers)
    ]
    for proc in procs:
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a worker exited {proc.returncode}:\n{stderr.decode(errors='replace')[-2000:]}")
    pool = await create_pool(database_url)
    try:
        spans = {}
        for label, ids in (("warmup", warmup_ids), ("backlog", backlog_ids)):
            spans[label] = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'succeeded') AS done, min(started_at) AS first, "
                "max(finished_at) AS last FROM runtime.job_runs WHERE job_id = ANY($1::text[])",
                ids,
            )
            if spans[label]["done"] != len(ids):
                raise SystemExit(f"only {spans[label]['done']} of {len(ids)} {label} jobs succeeded")
        if spans["backlog"]["first"] < spans["warmup"]["last"]:
            raise SystemExit(f"the workers took over {BACKLOG_DELAY_S} s to warm up")
        return float((spans["backlog"]["last"] - spans["backlog"]["first"]).total_seconds())
    finally:
        await pool.close()


def worker_env(database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ORRERY_", "OPENAI_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ORRERY_DATA_DIR=str(data_dir),
        ORRERY_LOG_LEVEL="WARNING",
        ORRERY_LOG_FORMAT="json",
        **extra,
    )
    return env


async def dispatch_throughput(server_dsn: str, redis_url: str, data_dir: Path, count: int, workers: int) -> float:
    """No-op jobs per second."""
    database_url = await fresh_database(server_dsn)
    queue = _enqueuer(database_url, redis_url, ECHO)
    env = worker_env(database_url, redis_url, data_dir, ORRERY_LLM="scripted")  # never called: echo jobs only
    seconds = await timed_backlog(database_url, queue, [{}] * WARMUP_JOBS, [{}] * count, workers, env)
    return count / seconds


async def ingestion_throughput(server_dsn: str, redis_url: str, data_dir: Path, count: int, workers: int) -> float:
    """Conversations ingested per second."""
    database_url = await fresh_database(server_dsn)
    pool = await create_pool(database_url)
    try:
        warmup = [{"conversation_id": c} for _, c in await _make_conversations(pool, WARMUP_JOBS, "warmup")]
        backlog = [{"conversation_id": c} for _, c in await _make_conversations(pool, count, "backlog")]
    finally:
        await pool.close()
    with instant_llm(ANSWER) as base_url:
        env = worker_env(database_url, redis_url, data_dir, OPENAI_BASE_URL=base_url, OPENAI_API_KEY="bench")
        queue = _enqueuer(database_url, redis_url, INGEST)
        seconds = await timed_backlog(database_url, queue, warmup, backlog, workers, env)
    return count / seconds


async def run(
    server_dsn: str, redis_url: str, data_dir: Path, counts: list[int], jobs: int, conversations: int, rounds: int
) -> None:
    dispatch: dict[int, list[float]] = {n: [] for n in counts}
    ingest: dict[int, list[float]] = {n: [] for n in counts}
    started = time.perf_counter()
    for round_number in range(1, rounds + 1):
        for workers in counts:
            print(f"round {round_number}/{rounds}, {workers} worker(s)…", file=sys.stderr)
            await redis_flush(redis_url)
            dispatch[workers].append(await dispatch_throughput(server_dsn, redis_url, data_dir, jobs, workers))
            await redis_flush(redis_url)
            ingest[workers].append(await ingestion_throughput(server_dsn, redis_url, data_dir, conversations, workers))
    print(
        f"\nThroughput on one Redis and one Postgres, {os.cpu_count()} CPU cores shared by everything, "
        f"{PER_WORKER_CONCURRENCY} jobs in flight per worker; median of {rounds} round(s) "
        f"(range), {time.perf_counter() - started:.0f} s in all\n"
    )
    print("| workers | dispatch, no-op jobs/s | vs 1 worker | ingestion, conversations/s | vs 1 worker |")
    print("|---:|---:|---:|---:|---:|")
    base_dispatch = statistics.median(dispatch[counts[0]])
    base_ingest = statistics.median(ingest[counts[0]])
    for n in counts:
        d, i = statistics.median(dispatch[n]), statistics.median(ingest[n])
        d_range = f"{min(dispatch[n]):.0f}-{max(dispatch[n]):.0f}"
        i_range = f"{min(ingest[n]):.0f}-{max(ingest[n]):.0f}"
        print(
            f"| {n} | {d:.0f} ({d_range}) | {d / base_dispatch:.2f}x | {i:.0f} ({i_range}) | {i / base_ingest:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs in the dispatch backlog")
    parser.add_argument("--conversations", type=int, default=300, help="ingestions in the ingestion backlog")
    parser.add_argument("--rounds", type=int, default=3, help="measure this many times and report medians")
    options = parser.parse_args()
    counts = [int(part) for part in options.workers.split(",")]
    configure_logging("WARNING", "json")
    with bench_servers() as servers:
        asyncio.run(
            run(
                servers.postgres_dsn,
                servers.redis_url,
                servers.data_dir,
                counts,
                options.jobs,
                options.conversations,
                options.rounds,
            )
        )


if __name__ == "__main__":
    main()
