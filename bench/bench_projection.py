"""The cosmos refresh from stored vectors: users per minute through a real worker, and proof that nothing is embedded.

Each user is seeded as after a typical week (bench_cycle.py's seed: 21 memory units, 2 concepts, their edges), and
every node's vector is stored in pgvector first, as the sync leaves them (random unit vectors: the layout's cost does
not depend on what they mean). Then one `projection_refresh` per user is enqueued and drained by `run.py worker
--burst --queue batch`. The worker's embedder is an endpoint nobody listens on, so a single embedding call would fail
the job: every projection written is laid out from stored vectors only.

    .venv/bin/python bench/bench_projection.py            # --users 1000 --processes 1 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from bench_cycle import seed
from bench_stack import bench_servers, fresh_database

from jobs.catalog import JOBS
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH
from store.postgres import create_pool
from store.projection_source import read_projection_source
from store.redis import connect_redis
from store.vector.base import VectorItem
from store.vector.pgvector import PgVectorStore

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-stored-vectors"
"""The embedding space the vectors are stored in and the worker's embedder claims (ORRERY_EMBEDDINGS_MODEL)."""
DIMENSION = 384
NOWHERE = "http://127.0.0.1:9/v1"
"""The worker's embeddings endpoint: the discard port, so any embedding call fails."""


@dataclass(frozen=True)
class Space:
    model_version: str = MODEL
    dimension: int = DIMENSION


def unit_vector(rng: random.Random) -> list[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(DIMENSION)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


async def store_vectors(pool: asyncpg.Pool, user_ids: list[str]) -> int:
    """Every projectable node of every user gets a stored vector for its current text; returns how many."""
    rng = random.Random(19)
    store = await PgVectorStore.open(pool, Space())
    stored = 0
    try:
        for user_id in user_ids:
            source = await read_projection_source(pool, user_id, max_memory_units=2000)
            await store.upsert([VectorItem(item, unit_vector(rng), MODEL) for item in source.items])
            stored += len(source.items)
    finally:
        await store.close()
    return stored


async def run(server_dsn: str, redis_url: str, data_dir: Path, args: argparse.Namespace) -> None:
    database_url = await fresh_database(server_dsn)
    pool = await create_pool(database_url, max_size=4)
    redis = await connect_redis(redis_url)
    try:
        user_ids, _ = await seed(pool, args.users, args.conversations)
        vectors = await store_vectors(pool, user_ids)
        spec = JOBS.get("projection_refresh")
        for user_id in user_ids:
            await enqueue(redis, pool, spec, {"user_id": user_id})
        env = {key: value for key, value in os.environ.items() if not key.startswith("ORRERY_")}
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            ORRERY_DATA_DIR=str(data_dir),
            ORRERY_LOG_LEVEL="WARNING",
            ORRERY_LOG_FORMAT="json",
            ORRERY_EMBEDDINGS_BASE_URL=NOWHERE,
            ORRERY_EMBEDDINGS_MODEL=MODEL,
            ORRERY_EMBEDDINGS_DIMENSION=str(DIMENSION),
            OPENAI_API_KEY="bench",
        )
        command = [sys.executable, str(ROOT / "run.py"), "worker", "--burst", "--queue", BATCH]
        command += ["--concurrency", str(args.concurrency), "--processes", str(args.processes)]
        began = time.time()
        worker = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
        _, stderr = await worker.communicate()
        wall = time.time() - began
        if worker.returncode != 0:
            raise SystemExit(f"the worker exited {worker.returncode}:\n{stderr.decode(errors='replace')[-2000:]}")
        await report(pool, user_ids, vectors, wall, args)
    finally:
        await redis.aclose()
        await pool.close()


async def report(pool: asyncpg.Pool, user_ids: list[str], vectors: int, wall: float, args: argparse.Namespace) -> None:
    users = len(user_ids)
    runs = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE state = 'succeeded') AS done, count(*) FILTER (WHERE state = 'dead') AS dead, "
        "min(started_at) AS first, max(finished_at) AS last, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) AS p50 "
        "FROM runtime.job_runs WHERE job_name = 'projection_refresh'"
    )
    written = await pool.fetchrow(
        "SELECT count(DISTINCT user_id) AS users, "
        "avg(jsonb_array_length(projection_data->'nodes')) AS nodes, "
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(projection_data->'nodes') n "
        "WHERE n->>'type' = 'Concept' AND n->'size' <> 'null'::jsonb)) AS sized "
        "FROM user_graph_projections WHERE user_id = ANY($1::text[])",
        user_ids,
    )
    embedded = await pool.fetchval(
        "SELECT count(*) FROM runtime.llm_calls WHERE prompt_name = 'embeddings' AND user_id = ANY($1::text[])",
        user_ids,
    )
    if runs["first"] is None or runs["last"] is None:
        errors = await pool.fetch("SELECT state, error FROM runtime.job_runs WHERE state <> 'succeeded' LIMIT 5")
        raise SystemExit(f"no refresh finished; the ledger says: {[dict(row) for row in errors]}")
    span = (runs["last"] - runs["first"]).total_seconds()
    print(
        f"\nprojection refresh for {users} users from {vectors} stored vectors ({vectors / users:.0f} per user), "
        f"{args.processes} worker processes x {args.concurrency} jobs"
    )
    print(
        "| users | refreshes done (dead) | nodes/projection | projections with sized concepts | embedding calls "
        "| job p50 (ms) | first start → last finish (s) | users/min | worker command wall (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {users} | {runs['done']} ({runs['dead']}) | {written['nodes'] or 0:.0f} | {written['sized']} | {embedded} "
        f"| {runs['p50'] * 1000:.0f} | {span:.1f} | {users / span * 60:,.0f} | {wall:.1f} |"
    )
    if written["users"] != users or runs["dead"]:
        raise SystemExit(f"{written['users']} of {users} users were projected, {runs['dead']} refreshes dead")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=7, help="processed conversations per user")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker process")
    args = parser.parse_args()
    with bench_servers() as servers:
        asyncio.run(run(servers.postgres_dsn, servers.redis_url, servers.data_dir, args))


if __name__ == "__main__":
    main()
