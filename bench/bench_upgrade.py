"""What an upgrade across migration 0024 costs an existing deployment: the migration's own statements, then the
dispatcher bringing the stores up to date with no `reconcile --repair`.

    .venv/bin/python bench/bench_upgrade.py [--users 100] [--units 200]

--users users of --units memory units each, half as many concepts (2% of them merged into another), 1.5 extracted
relationships per memory unit, three InsightAgent artifacts and five pending prompts per user, on the embedded graph
and pgvector. The stores are filled as an Orrery from before issue 20 left them: the graph through the dispatcher,
then without the relationships it did not write (AUTHORED_BY, MENTIONS, MERGED_INTO); vector items with random unit
vectors (reconcile compares hashes, never vectors, and no model is loaded) tagged with insight's old types, which
0020 then rewrites in Postgres. Times: 0024's outbox INSERT … SELECT and its prompt backfill, then the graph and
vector dispatchers until the outbox is empty; afterwards reconcile finds no drift. Uses a throwaway embedded Postgres
and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database
from store_fill import fill_vectors

from cli.session import Session, configured_space, dispatch
from jobs.runtime.logs import configure_logging
from settings import load_settings
from store import outbox
from store.migrate import MIGRATIONS_DIR
from store.postgres import create_pool
from store.reconcile import GRAPH, VECTOR, graph_drift, store_refs, vector_drift
from store.redis import connect_redis

UPGRADE = next(MIGRATIONS_DIR.glob("0024_*.sql")).read_text(encoding="utf-8")
OUTBOX_PART, PROMPTS_PART = re.split(r"\n(?=-- 2\. )", UPGRADE, maxsplit=1)
OLD_KINDS = ("pattern", "tension", "breakthrough")


async def populate(pool: asyncpg.Pool, users: int, units: int) -> list[str]:
    """The users and their rows, in a few set-based statements; outbox rows for the graph (the first fill)."""
    user_ids = [str(uuid.uuid4()) for _ in range(users)]
    await pool.execute(
        "INSERT INTO users (user_id, email, name, language_preference, memory_profile, preferences, created_at) "
        "SELECT u, u || '@example.com', 'User', 'en', '{}', '{}', now() FROM unnest($1::text[]) AS u",
        user_ids,
    )
    await pool.execute(
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
        "importance_score, sentiment_score, metadata) "
        "SELECT gen_random_uuid()::text, u, 'Moment ' || i, 'Something that happened, number ' || i || '.', "
        "'2026-01-01', now(), now(), 5, 0.1, '{}' FROM unnest($1::text[]) AS u, generate_series(1, $2) AS i",
        user_ids,
        units,
    )
    await pool.execute(
        "INSERT INTO concepts (concept_id, user_id, name, type, status, created_at, last_updated_ts, metadata) "
        "SELECT gen_random_uuid()::text, u, 'concept ' || i, 'topic', 'active', now(), now(), '{}' "
        "FROM unnest($1::text[]) AS u, generate_series(1, $2) AS i",
        user_ids,
        units // 2,
    )
    # each unit related to one or two of its user's concepts (1.5 a unit on average)
    await pool.execute(
        "WITH c AS (SELECT user_id, concept_id, row_number() OVER (PARTITION BY user_id ORDER BY concept_id) AS n, "
        "count(*) OVER (PARTITION BY user_id) AS total FROM concepts), "
        "m AS (SELECT user_id, muid, row_number() OVER (PARTITION BY user_id ORDER BY muid) AS n FROM memory_units) "
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength, in_graph) "
        "SELECT gen_random_uuid()::text, m.user_id, m.muid, 'MemoryUnit', c.concept_id, 'Concept', 'RELATED_TO', "
        "0.5, false "
        "FROM m JOIN c ON c.user_id = m.user_id AND (c.n = 1 + (m.n % c.total) "
        "OR (m.n % 2 = 0 AND c.n = 1 + ((m.n * 7) % c.total))) ON CONFLICT DO NOTHING"
    )
    await pool.execute(
        "WITH c AS (SELECT user_id, concept_id, row_number() OVER (PARTITION BY user_id ORDER BY concept_id) AS n "
        "FROM concepts) UPDATE concepts k SET status = 'merged', merged_into_concept_id = p.concept_id "
        "FROM c, c AS p WHERE k.concept_id = c.concept_id AND p.user_id = c.user_id AND p.n = 1 "
        "AND c.n % 50 = 0"
    )
    await pool.execute(
        "INSERT INTO derived_artifacts (artifact_id, user_id, artifact_type, title, content_narrative, "
        "content_data, generated_by_agent, created_at) "
        "SELECT gen_random_uuid()::text, u, k, 'A ' || k, 'Runs keep them steady.', '{}', 'InsightAgent', now() "
        "FROM unnest($1::text[]) AS u, unnest($2::text[]) AS k",
        user_ids,
        list(OLD_KINDS),
    )
    await pool.execute(
        "INSERT INTO proactive_prompts (prompt_id, user_id, prompt_text, source_agent, status, priority, metadata) "
        "SELECT gen_random_uuid()::text, u, 'Question ' || i || '?', 'ProactivePromptAgent', 'pending', 5, '{}' "
        "FROM unnest($1::text[]) AS u, generate_series(1, 5) AS i",
        user_ids,
    )
    for user_id in user_ids:
        refs = await store_refs(pool, user_id, GRAPH)
        await outbox.record_changes(pool, user_id, [outbox.Change(r.label, r.entity_id) for r in refs], stores=(GRAPH,))
    return user_ids


async def main(users: int, units: int) -> None:
    configure_logging("WARNING", "console")
    with bench_servers() as servers:
        dsn = await fresh_database(servers.postgres_dsn)
        settings = load_settings(database_url=dsn, redis_url=servers.redis_url, data_dir=servers.data_dir)
        pool = await create_pool(dsn, max_size=4)
        redis = await connect_redis(servers.redis_url)
        rows: list[tuple[str, float, str]] = []
        async with AsyncExitStack() as stack:
            session = Session(settings, pool, redis, stack)
            stack.push_async_callback(session.resources.aclose)
            user_ids = await populate(pool, users, units)
            await dispatch(session, GRAPH)
            for user_id in user_ids:
                await fill_vectors(session, user_id)
            # as an earlier Orrery left it: no relationships of the new kinds, then 0020's rewrite of the rows
            await pool.execute(
                "DELETE FROM runtime.knowledge_edges WHERE relationship_type IN ('AUTHORED_BY', 'MENTIONS', "
                "'MERGED_INTO')"
            )
            await pool.execute(
                "UPDATE derived_artifacts SET content_data = jsonb_build_object('insight_kind', artifact_type), "
                "artifact_type = CASE artifact_type WHEN 'breakthrough' THEN 'trophy' ELSE 'insight_summary' END"
            )
            graph, vector = await session.graph(), await session.vector(embedding=True)  # a worker has it loaded
            space = configured_space(settings).model_version
            sample = user_ids[:: max(1, users // 5)]
            assert all([(await graph_drift(pool, graph, u)).total for u in sample])
            assert all([(await vector_drift(pool, vector, u, space)).total for u in sample])

            started = time.perf_counter()
            await pool.execute(OUTBOX_PART)
            backlog = {b.store: b.rows for b in await outbox.backlog(pool)}
            rows.append(("0024: outbox rows (one INSERT … SELECT)", time.perf_counter() - started, f"{backlog}"))
            started = time.perf_counter()
            await pool.execute(PROMPTS_PART)
            rows.append(("0024: prompt expiries", time.perf_counter() - started, f"{users * 5} pending prompts"))
            for store in (GRAPH, VECTOR):
                started = time.perf_counter()
                applied = await dispatch(session, store)
                seconds = time.perf_counter() - started
                assert not applied.failed, applied.last_error
                rows.append((f"dispatcher: {store} outbox", seconds, f"{applied.rows / seconds:,.0f} rows/s"))
            for user_id in sample:
                assert (await graph_drift(pool, graph, user_id)).total == 0
                assert (await vector_drift(pool, vector, user_id, space)).total == 0
        await redis.aclose()
        await pool.close()
    print(f"\n{users} users x {units} memory units ({users * units:,}), {datetime.now(UTC):%Y-%m-%d}\n")
    print(f"| {'step':<42} | {'seconds':>8} | note |")
    print(f"|{'-' * 44}|{'-' * 9}:|------|")
    for label, seconds, note in rows:
        print(f"| {label:<42} | {seconds:8.2f} | {note} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--units", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.units))
