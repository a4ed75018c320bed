"""Insight benchmark: what one cycle's insight costs for a user with 1k, 10k and 100k memory units.

    .venv/bin/python bench/bench_insight.py [--sizes 1000,10000,100000] [--repeats 30]

Each user's history is inserted directly with SQL: the last cycle (7 days) holds the same week of activity for
every size (10 processed conversations, 40 memory units), the rest of the memory units are spread over the three
years before it; one concept per 10 memory units, in clusters of 20 (a memory unit is about three concepts, mostly
of one cluster), one RELATED_TO between concepts per 5 memory units, one growth event per memory unit. Then:

- compile: store.insight_material.load_insight_material (the cycle's material), median of --repeats runs, the sizes
  interleaved round-robin on one warm connection;
- prompt tokens: the insight prompt for that material (system + user, ~4 characters a token), as sent;
- graph: store.insight_material.load_concept_graph (the user's whole concept graph) and its edges;
- detect: Louvain (agents.insight.detect_communities) on that graph (median of 3), and the communities found;
- graph step: jobs.insight.insight_input, all the job does with the graph (load, neighbours, Louvain, matching);
- write: store.insight_writes.write_insight of a scripted answer (communities included), once;
- the sample user's first cycle (store/samples, ingested with the shipped answers), through a real worker and the
  scripted LLM: LLM calls and tokens of the insight job.

Goal: compile for 100k within 1.5x of 1k (the cycle window and the token budget bound it, not the history).
Uses DATABASE_URL / REDIS_URL when set, else a throwaway embedded Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database

from agents.insight import InsightAgent, build_view, detect_communities
from agents.llm import InMemoryCallLog, LLMClient, estimate_tokens
from agents.scripted_llm import sample_answers_server
from jobs.catalog import JOBS
from jobs.insight import INSIGHT, insight_input
from jobs.maintenance import end_and_enqueue_ingestion
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH, INTERACTIVE
from jobs.runtime.logs import configure_logging
from jobs.runtime.registry import JobTable
from jobs.runtime.worker import WorkerOptions, run_workers
from prompts import load_prompt
from settings import load_settings
from store.cycles import read_cycle
from store.insight_material import load_concept_graph, load_insight_material
from store.insight_writes import write_insight
from store.llm_calls import list_llm_calls
from store.postgres import create_pool
from store.redis import connect_redis
from store.samples.loader import seed_sample_user

WEEK_CONVERSATIONS, WEEK_UNITS, CLUSTER = 10, 40, 20


async def seed_user(pool: asyncpg.Pool, user_id: str, units: int, now: datetime) -> None:
    """A user with `units` memory units (see the module docstring), all inserted with set-based SQL."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    cycle_start = naive - timedelta(days=7)
    history_conversations = max((units - WEEK_UNITS) // 4, 1)
    concepts = max(units // 10, CLUSTER)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO users (user_id, email, created_at, last_cycle_started_at, memory_profile) "
            "VALUES ($1, $1::text || '@bench.invalid', $2, $3, '{\"summary\": \"A bench user.\"}')",
            user_id,
            cycle_start - timedelta(days=3 * 365),
            cycle_start,
        )
        # conversations: the week's 10, then the history's; each holds 4 memory units
        await conn.execute(
            """
            INSERT INTO conversations (id, user_id, title, start_time, ended_at, status, importance_score,
                                       context_summary)
            SELECT $1::text || ':conv:' || i, $1, 'Conversation ' || i,
                   CASE WHEN i < $3::int THEN $2::timestamp + (i * interval '15 hours')
                        ELSE $2::timestamp - ((i - $3 + 1) * (interval '1095 days' / $4::int)) END,
                   CASE WHEN i < $3 THEN $2::timestamp + (i * interval '15 hours') + interval '20 minutes'
                        ELSE $2::timestamp - ((i - $3 + 1) * (interval '1095 days' / $4)) + interval '20 minutes' END,
                   'processed', 1 + (i * 7919 % 10),
                   'The user talked about their week, their goals and the people around them, number ' || i || '.'
            FROM generate_series(0, $3::int + $4::int - 1) AS i
            """,
            user_id,
            cycle_start,
            WEEK_CONVERSATIONS,
            history_conversations,
        )
        await conn.execute(
            """
            INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts,
                                      importance_score, sentiment_score, source_conversation_id)
            SELECT $1::text || ':mu:' || i, $1, 'Memory ' || i,
                   'Something the user lived and told the companion about, with enough words to be a real memory '
                   || 'of a real week: number ' || i || '.',
                   c.start_time, c.start_time, c.start_time, 1 + (i::bigint * 104729 % 10), ((i % 21) - 10) / 10.0, c.id
            FROM generate_series(0, $2::int - 1) AS i
            JOIN conversations c ON c.id = $1 || ':conv:' || (i / 4)
            """,
            user_id,
            units,
        )
        await conn.execute(
            """
            INSERT INTO concepts (concept_id, user_id, name, type, description, status, created_at, last_updated_ts,
                                  metadata)
            SELECT $1::text || ':c:' || i, $1, 'Concept ' || i,
                   (ARRAY['activity', 'person', 'goal', 'value'])[1 + i % 4],
                   'A thing in the user''s life, number ' || i || '.', 'active', $3::timestamp, $3,
                   jsonb_build_object('normalized_name', 'concept ' || i, 'aliases', '[]'::jsonb)
            FROM generate_series(0, $2::int - 1) AS i
            """,
            user_id,
            concepts,
            naive,
        )
        # each memory unit is about three concepts of one cluster (one in ten reaches into the next cluster)
        await conn.execute(
            """
            INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type,
                                                 relationship_type, strength, source_conversation_id)
            SELECT $1::text || ':e:' || i || ':' || k, $1, $1 || ':mu:' || i, 'MemoryUnit',
                   $1 || ':c:' || ((((i * 31) % ($2::int / $3::int)) * $3 + (i * 7 + k * 5) % $3
                                   + CASE WHEN k = 2 AND i % 10 = 0 THEN $3 ELSE 0 END) % $2),
                   'Concept', 'IS_ABOUT', 0.5 + (k * 0.2), $1 || ':conv:' || (i / 4)
            FROM generate_series(0, $4::int - 1) AS i, generate_series(0, 2) AS k
            ON CONFLICT DO NOTHING
            """,
            user_id,
            concepts,
            CLUSTER,
            units,
        )
        await conn.execute(
            """
            INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type,
                                                 relationship_type, strength)
            SELECT $1::text || ':r:' || j, $1, $1 || ':c:' || a, 'Concept', $1 || ':c:' || b, 'Concept', 'RELATED_TO',
                   0.6
            FROM (SELECT j, (j * 37) % $2::int AS a, ((j * 37) % $2 / $3::int) * $3 + (j * 11 + 1) % $3 AS b
                  FROM generate_series(0, $4::int - 1) AS j) AS p
            WHERE a <> b
            ON CONFLICT DO NOTHING
            """,
            user_id,
            concepts,
            CLUSTER,
            units // 5,
        )
        await conn.execute(
            """
            INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at)
            SELECT $1::text || ':g:' || i, $1, m.muid, 'MemoryUnit',
                   (ARRAY['know_self', 'know_world', 'act_self', 'act_world', 'show_self', 'show_world'])[1 + i % 6],
                   0.2, 'ingestion', m.creation_ts
            FROM generate_series(0, $2::int - 1) AS i JOIN memory_units m ON m.muid = $1 || ':mu:' || i
            """,
            user_id,
            units,
        )
    await pool.execute("ANALYZE")


async def compile_times(pool: asyncpg.Pool, user_ids: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds per compile of each user's cycle, measured round-robin on one warm connection (sizes interleaved, so
    the minute-to-minute speed of a shared machine falls on all of them alike)."""
    settings = load_settings()
    now = datetime.now(UTC)
    times: dict[str, list[float]] = {user_id: [] for user_id in user_ids}
    async with pool.acquire() as conn:
        cycles = {user_id: await read_cycle(conn, user_id) for user_id in user_ids}
        for round_ in range(repeats + 1):
            for user_id in user_ids:
                cycle = cycles[user_id]
                assert cycle is not None and cycle.last_cycle_started_at is not None
                started = time.perf_counter()
                await load_insight_material(
                    conn,
                    cycle.cycle,
                    window_start=cycle.last_cycle_started_at,
                    window_end=now,
                    importance_threshold=settings.insight_importance_threshold,
                )
                if round_:  # the first round warms the statement cache and the buffers
                    times[user_id].append(time.perf_counter() - started)
    return times


async def measure(pool: asyncpg.Pool, user_id: str, llm: LLMClient) -> dict[str, float | int]:
    """Everything but the compile, once: the graph step, the prompt, the write."""
    settings = load_settings()
    cycle = await read_cycle(pool, user_id)
    assert cycle is not None and cycle.last_cycle_started_at is not None
    now = datetime.now(UTC)
    material = await load_insight_material(
        pool,
        cycle.cycle,
        window_start=cycle.last_cycle_started_at,
        window_end=now,
        importance_threshold=settings.insight_importance_threshold,
    )
    started = time.perf_counter()
    links = await load_concept_graph(pool, user_id)
    graph_s = time.perf_counter() - started
    detects = []
    for _ in range(3):
        started = time.perf_counter()
        found = detect_communities(links)
        detects.append(time.perf_counter() - started)
    detect_s = statistics.median(detects)
    started = time.perf_counter()
    data = await insight_input(pool, material)  # the job's whole graph step: the load and Louvain again, and more
    graph_step_s = time.perf_counter() - started
    view = build_view(data, settings.insight_input_token_budget)
    rendered = load_prompt("insight").render(**view.variables)

    result = await InsightAgent.from_settings(llm, settings).run(data)
    started = time.perf_counter()
    summary = await write_insight(pool, result)
    write_s = time.perf_counter() - started
    assert summary.outcome == "written", summary
    return {
        "prompt_tokens": estimate_tokens((rendered.system or "") + rendered.user),
        "memory_units_shown": len(view.memory_units),
        "graph_ms": graph_s * 1000,
        "edges": len(links),
        "detect_ms": detect_s * 1000,
        "communities": len(found),
        "graph_step_ms": graph_step_s * 1000,
        "write_ms": write_s * 1000,
    }


async def sample_cycle(server_dsn: str, redis_url: str, data_dir: Path) -> tuple[int, int, int, int]:
    """Conversations, LLM calls, prompt and completion tokens of the sample user's insight (the chain after it left
    out)."""
    database_url = await fresh_database(server_dsn)
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, log_level="WARNING", llm="scripted"
    )
    pool = await create_pool(database_url)
    redis = await connect_redis(redis_url)
    jobs = JobTable(spec for spec in JOBS.all() if spec.name not in ("proactive_prompts", "cycle_report"))
    try:
        await redis.flushdb()
        seeded = await seed_sample_user(pool, redis, media_dir=settings.resolved_media_root)  # where workers read
        await end_and_enqueue_ingestion(pool, redis, timeout_minutes=0.001, limit=100)
        await run_workers(settings, database_url, redis_url, WorkerOptions((INTERACTIVE,), 4, burst=True), jobs)
        await enqueue(redis, pool, INSIGHT, {"user_id": seeded.user_id})
        await run_workers(settings, database_url, redis_url, WorkerOptions((BATCH,), 1, burst=True), jobs)
        calls = [c.call for c in await list_llm_calls(pool, seeded.user_id) if c.call.agent == "insight"]
        prompt, completion = sum(c.prompt_tokens for c in calls), sum(c.completion_tokens for c in calls)
        return len(seeded.conversations), len(calls), prompt, completion
    finally:
        await redis.aclose()
        await pool.close()


async def run(server_dsn: str, redis_url: str, data_dir: Path, sizes: list[int], repeats: int) -> None:
    database_url = await fresh_database(server_dsn)
    pool = await create_pool(database_url, min_size=1, max_size=4)
    now = datetime.now(UTC)
    try:
        for size in sizes:
            started = time.perf_counter()
            await seed_user(pool, f"bench-{size}", size, now)
            print(f"seeded {size} memory units in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        compiles = await compile_times(pool, [f"bench-{size}" for size in sizes], repeats)
        rows = []
        with sample_answers_server() as server:
            llm = LLMClient(base_url=server.base_url, api_key="bench", call_log=InMemoryCallLog())
            try:
                for size in sizes:
                    measured = await measure(pool, f"bench-{size}", llm)
                    rows.append((size, {**measured, "compile_ms": statistics.median(compiles[f"bench-{size}"]) * 1000}))
            finally:
                await llm.aclose()
    finally:
        await pool.close()

    print(
        "| memory units | compile (ms) | prompt tokens | units shown | graph load (ms) | concept edges "
        "| Louvain (ms) | communities | graph step (ms) | write (ms) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, m in rows:
        print(
            f"| {size:,} | {m['compile_ms']:.1f} | {m['prompt_tokens']:,} | {m['memory_units_shown']} "
            f"| {m['graph_ms']:.0f} | {m['edges']:,} | {m['detect_ms']:.0f} | {m['communities']} "
            f"| {m['graph_step_ms']:.0f} | {m['write_ms']:.0f} |"
        )
    conversations, calls, prompt_tokens, completion_tokens = await sample_cycle(server_dsn, redis_url, data_dir)
    print(
        f"sample user's first cycle ({conversations} conversations): {calls} insight LLM call(s), "
        f"{prompt_tokens:,} prompt and {completion_tokens:,} completion tokens"
    )
    base = rows[0][1]["compile_ms"]
    for size, m in rows[1:]:
        print(f"compile at {size:,} vs {rows[0][0]:,}: {m['compile_ms'] / base:.2f}x (goal: at most 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="memory units per user, comma-separated")
    parser.add_argument("--repeats", type=int, default=30, help="compile runs per size (the median is reported)")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    configure_logging("WARNING", "json")
    with bench_servers() as servers:
        asyncio.run(run(servers.postgres_dsn, servers.redis_url, servers.data_dir, sizes, options.repeats))


if __name__ == "__main__":
    main()
