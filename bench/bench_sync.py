"""Outbox convergence: how long from an ingestion's commit until the graph and the vector store hold it, under a
burst of ingestions, and how long after a graph store outage ends until everything is applied.

    .venv/bin/python bench/bench_sync.py [--conversations 60] [--outage-s 20] [--distinct]

One in-process worker (both queues, the real runtime, the real local embedding model, the embedded graph and
pgvector) works off --conversations ingestions answered by a zero-latency LLM. Lag per memory unit = when the store
row was written (graph_nodes.updated_at, vector_items.updated_at, by Postgres' clock) minus when the ingestion's
transaction committed (the host's clock, taken as write_ingestion returns; Postgres runs on the same host). The
unit's ingestion_ts is taken earlier, at its INSERT inside that transaction: the time from it to the commit is
reported beside the lags. Then the graph store refuses every write for --outage-s while more conversations are ingested
(they keep committing), and the time from its return to an empty graph backlog is measured: the dispatcher's own
retries (0.5, 1, 2, 4, then every 5 s) bring it back with no new commit to wake it. Goals: p95 <= 1 s; everything
applied within 10 s of the store's return. Every conversation gets the same answer, so the same texts are embedded
again and again (the embedder's text cache answers them); --distinct makes each answer's texts its own
(instant_llm.distinct_answer), which is what the local model costs when every memory is new.
Uses a throwaway embedded Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database
from instant_llm import instant_llm

import jobs.ingestion
import jobs.sync
import store.ingestion_writes
from agents.scripted_llm import load_sample_answers
from jobs.catalog import JOBS
from jobs.ingestion import INGEST
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import QUEUES
from jobs.runtime.logs import configure_logging
from jobs.runtime.registry import JobTable
from jobs.runtime.resources import Resource, WorkerResources
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import load_settings
from store import outbox
from store.graph.base import GraphBatch, GraphStoreUnavailable
from store.graph.postgres import PostgresGraphStore
from store.postgres import create_pool
from store.redis import connect_redis
from store.repos import conversations, users

ANSWER: dict[str, Any] = load_sample_answers()[0].answer
COMMITTED: dict[str, float] = {}
"""conversation id -> when its ingestion's transaction committed (epoch seconds)."""
WRITE = store.ingestion_writes.write_ingestion


async def timed_write(*args: Any, **kwargs: Any) -> Any:
    summary = await WRITE(*args, **kwargs)
    COMMITTED[summary.conversation_id] = time.time()
    return summary


class SwitchableGraph:
    """The embedded graph store, refusing writes while `down` (an outage of Neo4j, say)."""

    down = False

    def __init__(self, real: PostgresGraphStore) -> None:
        self._real = real
        self.backend = "postgres"

    async def apply(self, user_id: str, batch: GraphBatch) -> None:
        if SwitchableGraph.down:
            raise GraphStoreUnavailable("graph store unreachable (bench outage)")
        await self._real.apply(user_id, batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@asynccontextmanager
async def _open(resources: WorkerResources) -> AsyncIterator[Any]:
    yield SwitchableGraph(PostgresGraphStore(resources.pool))


SWITCHABLE = Resource("switchable-graph", _open)


async def conversations_for(pool: asyncpg.Pool, count: int, label: str) -> list[str]:
    made = []
    start = datetime.now(UTC) - timedelta(hours=1)
    for index in range(count):
        user = await users.create_user(pool, str(uuid.uuid4()), email=f"{label}-{index}@bench.invalid")
        conversation = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=start)
        await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k today!")
        made.append(conversation.id)
    return made


async def wait_for(pool: asyncpg.Pool, conversation_ids: list[str], *, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FROM conversations WHERE id = ANY($1::text[]) AND status = 'processed'", conversation_ids
        )
        if done == len(conversation_ids) and not sum(b.rows for b in await outbox.backlog(pool)):
            return
        await asyncio.sleep(0.1)
    raise SystemExit("timed out waiting for ingestion and sync")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def lags(pool: asyncpg.Pool, conversation_ids: list[str], table: str, key: str) -> list[float]:
    """Per memory unit of these conversations: its store row's write time minus its transaction's commit."""
    rows = await pool.fetch(
        f"SELECT m.source_conversation_id AS conversation, extract(epoch FROM s.updated_at)::float8 AS written "
        f"FROM memory_units m JOIN {table} s ON s.{key} = m.muid "
        "WHERE m.source_conversation_id = ANY($1::text[])",
        conversation_ids,
    )
    return [r["written"] - COMMITTED[r["conversation"]] for r in rows]


async def insert_to_commit(pool: asyncpg.Pool, conversation_ids: list[str]) -> list[float]:
    """Per memory unit: from its INSERT (ingestion_ts) to its transaction's commit."""
    rows = await pool.fetch(
        "SELECT source_conversation_id AS conversation, "
        "extract(epoch FROM ingestion_ts AT TIME ZONE 'UTC')::float8 AS inserted "
        "FROM memory_units WHERE source_conversation_id = ANY($1::text[])",
        conversation_ids,
    )
    return [COMMITTED[r["conversation"]] - r["inserted"] for r in rows]


async def run(database_url: str, redis_url: str, data_dir: Path, count: int, outage_s: float, distinct: bool) -> None:
    with instant_llm(ANSWER, distinct=distinct) as base_url:
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
        sync = dataclasses.replace(jobs.sync.SYNC_STORES, resources=(SWITCHABLE, VECTOR, EMBEDDER))
        setattr(jobs.sync, "GRAPH", SWITCHABLE)  # noqa: B010  (the module global apply_graph reads)
        setattr(jobs.ingestion, "write_ingestion", timed_write)  # noqa: B010  (the name the job calls)
        table = JobTable([sync if spec.name == sync.name else spec for spec in JOBS.all()])
        worker = asyncio.create_task(
            run_workers(settings, database_url, redis_url, WorkerOptions(QUEUES, concurrency=8), table)
        )
        try:
            warm = await conversations_for(pool, 3, "warm")  # loads the model and opens everything once
            for conversation_id in warm:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
            await wait_for(pool, warm)

            burst = await conversations_for(pool, count, "burst")
            started = time.perf_counter()
            for conversation_id in burst:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
            await wait_for(pool, burst)
            elapsed = time.perf_counter() - started
            graph = await lags(pool, burst, "runtime.graph_nodes", "node_key")
            before_commit = await insert_to_commit(pool, burst)
            vector = await lags(pool, burst, "runtime.vector_items", "source_entity_id")

            SwitchableGraph.down = True
            during = await conversations_for(pool, max(count // 4, 5), "outage")
            for conversation_id in during:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
            await asyncio.sleep(outage_s)
            committed = await pool.fetchval(
                "SELECT count(*) FROM conversations WHERE id = ANY($1::text[]) AND status = 'processed'", during
            )
            pending = {b.store: b.rows for b in await outbox.backlog(pool)}
            SwitchableGraph.down = False
            back = time.perf_counter()
            await wait_for(pool, during)
            converged = time.perf_counter() - back
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # run_workers drains on SIGTERM
            await asyncio.gather(worker, return_exceptions=True)
            await redis.aclose()
            await pool.close()
    units = len(graph)
    texts = "each answer's texts its own" if distinct else "the same answer's texts each time"
    load = os.getloadavg()[0]
    print(f"{count} ingestions ({units} memory units; {texts}) committed and synced in {elapsed:.1f} s")
    print(f"(load average {load:.1f} on {os.cpu_count()} cores)\n")
    print("| store | memory units | lag p50 | lag p95 | lag max |")
    print("|---|---:|---:|---:|---:|")
    for name, values in (("graph (embedded)", graph), ("vector (pgvector, local model)", vector)):
        print(
            f"| {name} | {len(values)} | {statistics.median(values) * 1000:.0f} ms | "
            f"{percentile(values, 0.95) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |"
        )
    print(
        f"\nfrom a unit's INSERT to its transaction's commit: p50 {statistics.median(before_commit) * 1000:.0f} ms, "
        f"p95 {percentile(before_commit, 0.95) * 1000:.0f} ms (not in the lags above)"
    )
    print(
        f"\ngraph store away for {outage_s:g} s: {committed} of {len(during)} ingestions committed meanwhile "
        f"(graph backlog {pending.get('graph', 0)} rows, vector backlog {pending.get('vector', 0)}); "
        f"everything applied {converged:.1f} s after it came back"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--distinct", action="store_true", help="every answer's texts its own (nothing cached)")
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    with bench_servers() as servers:
        database_url = asyncio.run(fresh_database(servers.postgres_dsn))
        workload = (args.conversations, args.outage_s, args.distinct)
        asyncio.run(run(database_url, servers.redis_url, servers.data_dir, *workload))


if __name__ == "__main__":
    main()
