"""Recall quality and speed of the pgvector store: one user among many, at 10k and 100k items of that user.

    .venv/bin/python bench/bench_recall.py [--others 100000] [--queries 200] [--sizes 10000,100000]

The table holds --others items spread over 100 other users plus the measured user's items (10k, then 100k). Each
query runs through `PgVectorStore.search` (the real path: HNSW walk, user filter, exact fallback) and is compared
with the exact top 10 of that user computed in numpy: recall@10, p50 and p95 latency, per ef_search. A small user
(1,000 items) in the same table shows the other path (the planner reads the user's rows and sorts exactly).

Vectors are synthetic: unit vectors of the local model's 384 dimensions drawn around 200 cluster centres (embedding
200k texts with the local model takes ~15 minutes on the reference VM's 2 cores; bench_embeddings.py measures that
cost). Rows are loaded with COPY without the HNSW index, which `PgVectorStore.open` then builds (time printed). Uses
DATABASE_URL when set, else a throwaway embedded Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import bench_servers, fresh_database

from store.postgres import create_pool
from store.repos.users import create_user
from store.vector.base import KnowledgeItem, SourceEntityType
from store.vector.pgvector import PgVectorStore

DIMENSION = 384
MODEL = "synthetic-384"
CLUSTERS = 200
EF_SEARCH = (40, 100, 200)
INDEX = "runtime.vector_items_embedding_384_idx"


@dataclass(frozen=True)
class Space:
    model_version: str = MODEL
    dimension: int = DIMENSION


class Vectors:
    """Unit vectors around fixed cluster centres: structured like text embeddings, unlike uniform noise."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(size=(CLUSTERS, DIMENSION)).astype(np.float32)

    def draw(self, count: int) -> np.ndarray:
        picked = self.centres[self.rng.integers(0, CLUSTERS, count)]
        noisy = picked + self.rng.normal(scale=0.6, size=(count, DIMENSION)).astype(np.float32)
        unit: np.ndarray = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        return unit


def rows(user_id: str, vectors: np.ndarray) -> tuple[list[tuple[object, ...]], list[str]]:
    """COPY rows of runtime.vector_items (the pool's pgvector codec takes the arrays) and their entity ids."""
    day0 = datetime(2024, 1, 1, tzinfo=UTC)
    records: list[tuple[object, ...]] = []
    ids: list[str] = []
    for n, vector in enumerate(vectors):
        entity_id = str(uuid.uuid4())
        item = KnowledgeItem(user_id, SourceEntityType.MEMORY_UNIT, entity_id, f"item {n}", "x", f"item {n}", day0)
        created = day0 + timedelta(minutes=n)
        records.append(
            (user_id, "MemoryUnit", entity_id, item.title, "x", MODEL, created, None, [], item.content_hash, vector)
        )
        ids.append(entity_id)
    return records, ids


COPY_COLUMNS = [
    "user_id",
    "source_entity_type",
    "source_entity_id",
    "title",
    "text_content",
    "embedding_model_version",
    "created_at",
    "importance_score",
    "tags",
    "content_hash",
    "embedding",
]


async def measure(
    store: PgVectorStore, user_id: str, ids: list[str], matrix: np.ndarray, queries: np.ndarray
) -> tuple[float, float, float]:
    """recall@10 against numpy's exact top 10, p50 and p95 latency in ms."""
    recalls, latencies = [], []
    for q in queries:
        exact = {ids[i] for i in np.argsort(-(matrix @ q))[:10]}
        started = time.perf_counter()
        hits = await store.search(user_id, q.tolist(), limit=10)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len(exact & {h.source_entity_id for h in hits}) / 10)
    latencies.sort()
    return statistics.mean(recalls), statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]


async def main(others: int, sizes: list[int], query_count: int) -> None:
    with bench_servers() as servers:
        dsn = await fresh_database(servers.postgres_dsn)
        # bulk loads go in without the index (each HNSW insert is slow); the store's open builds it afterwards
        pool = await create_pool(f"{dsn}{'&' if '?' in dsn else '?'}maintenance_work_mem=1GB", min_size=1, max_size=4)
        await pool.execute(f"DROP INDEX {INDEX}")
        vectors = Vectors()
        users = [str(uuid.uuid4()) for _ in range(102)]
        target, small, crowd = users[0], users[1], users[2:]
        for user_id in users:
            await create_user(pool, user_id, email=f"{user_id}@bench.test")
        async with pool.acquire() as conn:
            for user_id in crowd:
                await conn.copy_records_to_table(
                    "vector_items",
                    schema_name="runtime",
                    columns=COPY_COLUMNS,
                    records=rows(user_id, vectors.draw(others // len(crowd)))[0],
                )
            small_matrix = vectors.draw(1000)
            small_rows, small_ids = rows(small, small_matrix)
            await conn.copy_records_to_table(
                "vector_items", schema_name="runtime", columns=COPY_COLUMNS, records=small_rows
            )
        target_matrix = np.zeros((0, DIMENSION), dtype=np.float32)
        target_ids: list[str] = []
        queries = vectors.draw(query_count)
        results: dict[int, dict[int, tuple[float, float, float]]] = {}
        small_results: dict[int, tuple[float, float, float]] = {}
        builds: dict[int, float] = {}
        for size in sizes:
            more = vectors.draw(size - len(target_ids))
            new_rows, new_ids = rows(target, more)
            await pool.execute(f"DROP INDEX IF EXISTS {INDEX}")
            async with pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "vector_items", schema_name="runtime", columns=COPY_COLUMNS, records=new_rows
                )
            started = time.perf_counter()
            await PgVectorStore.open(pool, Space())  # creates the dimension's index, as on a fresh deployment
            builds[size] = time.perf_counter() - started
            await pool.execute("ANALYZE runtime.vector_items")
            target_matrix = np.vstack([target_matrix, more])
            target_ids += new_ids
            results[size] = {}
            for ef in EF_SEARCH:
                store = await PgVectorStore.open(pool, Space(), ef_search=ef)
                await measure(store, target, target_ids, target_matrix, queries[:20])  # warm the cache
                results[size][ef] = await measure(store, target, target_ids, target_matrix, queries)
            store = await PgVectorStore.open(pool, Space())
            small_results[size] = await measure(store, small, small_ids, small_matrix, queries)
        await pool.close()

    print(f"\npgvector HNSW (m=16, ef_construction=64), cosine, {DIMENSION} dimensions, synthetic clustered vectors;")
    print(f"{others:,} items of 100 other users in the table; {query_count} queries per row\n")
    print("| measured user's items | table rows | index build s | ef_search | recall@10 | p50 ms | p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for ef in EF_SEARCH:
            recall, p50, p95 = results[size][ef]
            table = others + 1000 + size
            print(f"| {size:,} | {table:,} | {builds[size]:.0f} | {ef} | {recall:.3f} | {p50:.1f} | {p95:.1f} |")
    for size in sizes:
        recall, p50, p95 = small_results[size]
        table = others + 1000 + size
        print(f"| 1,000 (small user) | {table:,} | | 200 | {recall:.3f} | {p50:.1f} | {p95:.1f} |")
    if len(sizes) >= 2:
        first, last = sizes[0], sizes[-1]
        growth = results[last][200][2] / results[first][200][2]
        print(f"\np95 growth {first:,} → {last:,} items at ef_search 200: {growth:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--others", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.others, [int(s) for s in arguments.sizes.split(",")], arguments.queries))
