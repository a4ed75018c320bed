"""Overhead per ingestion: the time Orrery spends on one conversation outside the model, with and without the
concept-deduplication similarity check, in the same run.

    .venv/bin/python bench/bench_overhead.py [--rounds 5]

The sample user's six conversations (store/samples) are ingested one at a time, in order, by an in-process worker
(both queues, the real runtime, the local embedding model loaded before it takes work, the embedded graph and
pgvector), each answered with its own shipped sample answer by a zero-latency LLM in another process (a real one runs
elsewhere too). Before the next conversation the outbox is applied, as it is between two conversations of one user
in life (they are minutes apart), so from the second conversation on the similarity check compares the new concepts'
names with the stored names of the earlier ones. Overhead = the ingest job's run time by the ledger (read, the LLM
request over HTTP, validation, the similarity check, the one-transaction write, the dispatcher's enqueue); the
check's own time is measured around it. Each round ingests the six conversations twice, for two sample users in a
fresh database: once with the check and once without (the check replaced by a no-op), in alternating order, after a
third user's six (not measured) have warmed the round's fresh worker.
Goals: overhead <= 0.08 s per ingestion; the check <= 25 ms.
Uses DATABASE_URL / REDIS_URL when set, else a throwaway embedded Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database
from instant_llm import instant_llm

import jobs.ingestion
import jobs.ingestion_recall
from agents.embeddings import CachedEmbedder
from agents.scripted_llm import load_sample_answers
from core.ingestion import IngestionResult
from jobs.catalog import JOBS
from jobs.ingestion import INGEST
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import QUEUES
from jobs.runtime.logs import configure_logging
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import load_settings
from store import outbox
from store.postgres import create_pool
from store.redis import connect_redis
from store.samples.loader import seed_sample_user

CHECK = jobs.ingestion_recall.dedupe_by_similarity
EMBED = jobs.ingestion_recall.embed_patiently


CACHES: list[CachedEmbedder] = []
"""Every embedder text cache the worker opened (emptied before each variant)."""
_CACHE_INIT = CachedEmbedder.__init__


def registered_init(self: CachedEmbedder, *args: Any, **kwargs: Any) -> None:
    _CACHE_INIT(self, *args, **kwargs)
    CACHES.append(self)


class Switch:
    """Whether the similarity check runs, and how long each run of it, and of its embedding call, took."""

    on = True
    seconds: ClassVar[list[float]] = []
    embedding: ClassVar[list[float]] = []


async def measured_embedding(*args: Any, **kwargs: Any) -> list[list[float]]:
    started = time.perf_counter()
    vectors = await EMBED(*args, **kwargs)
    Switch.embedding.append(time.perf_counter() - started)
    return vectors


async def measured_check(ctx: JobContext, result: IngestionResult, *, has_concepts: bool) -> IngestionResult:
    if not Switch.on:
        return result
    started = time.perf_counter()
    checked = await CHECK(ctx, result, has_concepts=has_concepts)
    if has_concepts and any(d.existing_concept_id is None for d in result.concepts):
        Switch.seconds.append(time.perf_counter() - started)
    return checked


async def ingest_in_order(pool: asyncpg.Pool, redis: Any, email: str) -> list[float]:
    """The sample user's conversations ingested one by one (each synced before the next): their run times."""
    seeded = await seed_sample_user(pool, redis, email=email)
    await pool.execute("UPDATE conversations SET status = 'ended' WHERE user_id = $1", seeded.user_id)
    durations = []
    for conversation in seeded.conversations:
        job = await enqueue(redis, pool, INGEST, {"conversation_id": conversation.conversation_id})
        deadline = time.monotonic() + 300
        while True:
            run = await pool.fetchrow(
                "SELECT state, extract(epoch FROM finished_at - started_at)::float8 AS seconds "
                "FROM runtime.job_runs WHERE job_id = $1 ORDER BY attempt DESC LIMIT 1",
                job.job_id,
            )
            synced = not sum(b.rows for b in await outbox.backlog(pool))
            if run is not None and run["state"] == "succeeded" and synced:
                durations.append(run["seconds"])
                break
            if run is not None and run["state"] in ("dead", "failed"):
                raise SystemExit(f"{job.job_id} ended {run['state']}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{job.job_id} did not finish in 300 s")
            await asyncio.sleep(0.02)
    return durations


async def one_round(
    server_dsn: str, redis_url: str, data_dir: Path, base_url: str, round_number: int
) -> dict[str, Any]:
    database_url = await fresh_database(server_dsn)
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data_dir,
        log_level="WARNING",
        openai_base_url=base_url,
        openai_api_key="bench",
    )
    pool = await create_pool(database_url, max_size=4)
    redis = await connect_redis(redis_url)
    await redis.flushdb()
    worker = asyncio.create_task(run_workers(settings, database_url, redis_url, WorkerOptions(QUEUES, 4), JOBS))
    try:
        times: dict[str, list[float]] = {}
        # A fresh worker's first ingestions open connections and prepare statements: not overhead either variant
        # has in a running worker.
        Switch.on = True
        checks, embeddings = len(Switch.seconds), len(Switch.embedding)
        await ingest_in_order(pool, redis, f"warm-up-{round_number}@bench.invalid")
        del Switch.seconds[checks:], Switch.embedding[embeddings:]
        order = ("with", "without") if round_number % 2 else ("without", "with")
        for variant in order:
            for cache in CACHES:  # every variant ingests the same sample texts: each must embed them as new ones, as
                cache._vectors.clear()  # a real conversation's are (else the second variant found them all cached)
            Switch.on = variant == "with"
            times[variant] = await ingest_in_order(pool, redis, f"{variant}-{round_number}@bench.invalid")
        return times
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # run_workers drains on SIGTERM
        await asyncio.gather(worker, return_exceptions=True)
        await redis.aclose()
        await pool.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run(server_dsn: str, redis_url: str, data_dir: Path, rounds: int) -> None:
    samples = load_sample_answers()
    setattr(jobs.ingestion, "dedupe_by_similarity", measured_check)  # noqa: B010  (the name the job calls)
    setattr(jobs.ingestion_recall, "embed_patiently", measured_embedding)  # noqa: B010
    setattr(CachedEmbedder, "__init__", registered_init)  # noqa: B010
    per_variant: dict[str, list[float]] = {"with": [], "without": []}
    round_means: list[tuple[float, float]] = []
    with instant_llm(samples[0].answer, keyed=[(s.match, s.answer) for s in samples]) as base_url:
        for round_number in range(1, rounds + 1):
            print(f"round {round_number}/{rounds}…", file=sys.stderr)
            times = await one_round(server_dsn, redis_url, data_dir, base_url, round_number)
            for variant, values in times.items():
                per_variant[variant] += values
            round_means.append((statistics.mean(times["with"]), statistics.mean(times["without"])))
    checks = sorted(Switch.seconds)
    print(f"\nOverhead per ingestion, the sample user's 6 conversations in order, {rounds} rounds\n")
    print("| | mean | median | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("ingestion, with the similarity check", per_variant["with"]),
        ("ingestion, check off", per_variant["without"]),
        (f"the check alone ({len(checks)} ingestions with new concepts and earlier ones)", checks),
        ("of which embedding the new names (one call)", Switch.embedding),
    ]
    for label, values in rows:
        ordered = sorted(values)
        if not ordered:
            continue
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        cells = [statistics.mean(ordered), statistics.median(ordered), p95, ordered[-1]]
        print(f"| {label} | " + " | ".join(ms(value) for value in cells) + " |")
    print(
        "\nper-round means, with / without: "
        + ", ".join(f"{ms(a)} / {ms(b)}" for a, b in round_means)
        + f"; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    with bench_servers() as servers:
        asyncio.run(run(servers.postgres_dsn, servers.redis_url, servers.data_dir, args.rounds))


if __name__ == "__main__":
    main()
