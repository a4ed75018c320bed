"""Operating the derived stores at size: reconcile, repair, rebuild and forget-user for one large user.

    .venv/bin/python bench/bench_reconcile.py [--units 10000]

One user with --units memory units, half as many concepts and 1.5x as many relationships (plus the user node), next
to two smaller users, on the embedded graph and pgvector. The graph is filled through the dispatcher's own code;
vector items get random unit vectors with the real content hashes (reconcile compares hashes, never vectors), so no
model is loaded. Times: a reconcile with no drift (graph, vector), one with 1% of the graph's nodes dropped and its
repair through the outbox, a graph rebuild of the user, and forget-user's four steps. Uses a throwaway embedded
Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database
from store_fill import fill_vectors

from cli.session import Session, configured_space, dispatch
from core.vocabulary import EntityKind, RelationshipType
from jobs.runtime.logs import configure_logging
from settings import load_settings
from store import forget, outbox
from store.postgres import create_pool
from store.reconcile import GRAPH, graph_drift, record_refs, store_refs, vector_drift
from store.redis import connect_redis
from store.repos import memory_units, users
from store.repos.knowledge_edges import NewEdge, upsert_edges


async def populate(pool: asyncpg.Pool, units: int) -> str:
    """A user with `units` memory units, units/2 concepts, 1.5 x units relationships; outbox rows for all of it."""
    user_id = str(uuid.uuid4())
    await users.create_user(pool, user_id, email=f"{user_id[:8]}@example.com", name="Big")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    unit_ids = [str(uuid.uuid4()) for _ in range(units)]
    new = [
        memory_units.NewMemoryUnit(
            muid=muid,
            title=f"Moment {i}",
            content=f"Something that happened, number {i}.",
            creation_ts=at,
            importance_score=5,
            sentiment_score=0.1,
            source_conversation_id=None,
        )
        for i, muid in enumerate(unit_ids)
    ]
    for start in range(0, units, 5000):
        await memory_units.insert_memory_units(pool, user_id, new[start : start + 5000])
    concept_ids = [str(uuid.uuid4()) for _ in range(units // 2)]
    await pool.execute(
        "INSERT INTO concepts (concept_id, user_id, name, type, status, created_at, last_updated_ts, metadata) "
        "SELECT c, $1, 'concept ' || i, 'topic', 'active', now(), now(), '{}' "
        "FROM unnest($2::text[]) WITH ORDINALITY AS u(c, i)",
        user_id,
        concept_ids,
    )
    rng = random.Random(7)
    edges = {(muid, rng.choice(concept_ids)) for muid in unit_ids for _ in range(2)}
    rows = [
        NewEdge(
            source_id=a,
            source_type=EntityKind.MEMORY_UNIT,
            target_id=b,
            target_type=EntityKind.CONCEPT,
            relationship_type=RelationshipType.IS_ABOUT,
            strength=0.5,
            description=None,
            source_conversation_id=None,
        )
        for a, b in sorted(edges)[: int(units * 1.5)]
    ]
    for start in range(0, len(rows), 5000):
        await upsert_edges(pool, user_id, rows[start : start + 5000])
    refs = await store_refs(pool, user_id, GRAPH)
    await outbox.record_changes(pool, user_id, [outbox.Change(r.label, r.entity_id) for r in refs], stores=("graph",))
    return user_id


T = TypeVar("T")
Results = list[tuple[str, float, str]]


async def timed(label: str, results: Results, work: Awaitable[T], note: str = "") -> T:
    started = time.perf_counter()
    value = await work
    results.append((label, time.perf_counter() - started, note))
    return value


async def main(units: int) -> None:
    configure_logging("WARNING", "console")
    with bench_servers() as servers:
        dsn = await fresh_database(servers.postgres_dsn)
        settings = load_settings(database_url=dsn, redis_url=servers.redis_url, data_dir=servers.data_dir)
        pool = await create_pool(dsn, max_size=4)
        redis = await connect_redis(servers.redis_url)
        results: Results = []
        async with AsyncExitStack() as stack:
            session = Session(settings, pool, redis, stack)
            stack.push_async_callback(session.resources.aclose)
            others = [await populate(pool, units // 10) for _ in range(2)]
            big = await populate(pool, units)
            await timed("graph: first apply through the dispatcher (all users)", results, dispatch(session, GRAPH))
            for user_id in [*others, big]:
                await fill_vectors(session, user_id)
            graph = await session.graph()
            vector = await session.vector()
            found = await timed("reconcile graph, no drift", results, graph_drift(pool, graph, big))
            results[-1] = (*results[-1][:2], f"{sum(k.held for k in found.kinds)} nodes and relationships")
            vfound = await timed(
                "reconcile vector, no drift",
                results,
                vector_drift(pool, vector, big, configured_space(settings).model_version),
            )
            results[-1] = (*results[-1][:2], f"{sum(k.held for k in vfound.kinds)} items")

            dropped = await pool.fetch(
                "DELETE FROM runtime.graph_nodes WHERE ctid IN (SELECT ctid FROM runtime.graph_nodes "
                "WHERE user_id = $1 AND label = 'MemoryUnit' ORDER BY node_key LIMIT $2) RETURNING node_key",
                big,
                units // 100,
            )
            drifted = await timed("reconcile graph, 1% of nodes dropped", results, graph_drift(pool, graph, big))
            await record_refs(pool, big, GRAPH, drifted.repair)
            await timed("repair: dispatcher applies them", results, dispatch(session, GRAPH), f"{len(dropped)} nodes")
            after = await graph_drift(pool, graph, big)
            assert after.total == 0, after.totals()

            async def rebuild() -> None:
                await graph.delete_user(big)
                await record_refs(pool, big, GRAPH, await store_refs(pool, big, GRAPH))
                await dispatch(session, GRAPH)

            await timed("rebuild --graph of the user", results, rebuild())
            assert (await graph_drift(pool, graph, big)).total == 0

            conversations = await forget.conversation_ids(pool, big)
            before = await timed(
                "forget-user: count (Postgres tables)", results, forget.count_postgres(pool, big, conversations)
            )
            results[-1] = (*results[-1][:2], f"{sum(before.values())} rows")
            await timed(
                "forget-user: Postgres transaction + tombstones",
                results,
                forget.delete_postgres(pool, big, conversations),
            )
            await timed(
                "forget-user: graph and vector delete_user",
                results,
                asyncio.gather(graph.delete_user(big), vector.delete_user(big)),
            )
            await timed("forget-user: drop tombstones", results, forget.drop_tombstones(pool, big))
            left = await forget.count_postgres(pool, big, conversations)
            assert not sum(left.values()), left
            assert await graph.counts(big) == await graph.counts("nobody") and not sum(
                (await vector.counts(big)).values()
            )
            for other in others:
                assert (await graph_drift(pool, graph, other)).total == 0
        await redis.aclose()
        await pool.close()
    print(
        f"\none user: {units} memory units, {units // 2} concepts, {int(units * 1.5)} relationships; two users of "
        f"{units // 10} beside them\n"
    )
    print(f"| {'step':<52} | {'seconds':>8} | note |")
    print(f"|{'-' * 54}|{'-' * 9}:|------|")
    for label, seconds, note in results:
        print(f"| {label:<52} | {seconds:8.2f} | {note} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().units))
