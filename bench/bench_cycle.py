"""A growth cycle for many due users through real workers and the scripted LLM: users per minute, LLM calls and
tokens per user per cycle, and that every user got exactly one report (and a reset cycle).

Each user is seeded directly in SQL as after a typical week: `--conversations` processed conversations, three memory
units each (every one highlighting the user's first concept), two concepts, growth events in this cycle and the one
before, the cycle started eight days ago. The chain starts from `insight` when that job is in the catalog, else from
`proactive_prompts`; it runs on `run.py worker --queue batch --burst --processes N` (the real command, the real
local embedding model for the projection and the vector store's sync). The LLM is agents/scripted_llm.py's server
answering from agents/samples/ in this process (its tokens are its own estimate: about 4 characters a token, of the
real rendered prompts).

    .venv/bin/python bench/bench_cycle.py                 # --users 1000 --processes 1 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from bench_stack import bench_servers, fresh_database

from agents.scripted_llm import sample_answers_server
from core.cycle import Cycle
from jobs.catalog import JOBS
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH
from store.postgres import create_pool
from store.redis import connect_redis

ROOT = Path(__file__).resolve().parent.parent
MEMORIES_PER_CONVERSATION = 3


async def seed(pool: asyncpg.Pool, users: int, conversations: int) -> tuple[list[str], datetime]:
    """`users` users at the end of a cycle, written with a few set-based statements; returns their ids and start."""
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    start = now - timedelta(days=8)
    user_ids = [str(uuid.uuid4()) for _ in range(users)]
    await pool.execute(
        "INSERT INTO users (user_id, email, name, created_at, last_cycle_started_at, concepts_created_in_cycle) "
        "SELECT u, u || '@bench.invalid', 'Bench', $2::timestamp - interval '60 days', $2, 2 FROM unnest($1::text[]) u",
        user_ids,
        start,
    )
    concept_ids = [[str(uuid.uuid4()), str(uuid.uuid4())] for _ in user_ids]
    await pool.execute(
        "INSERT INTO concepts (concept_id, user_id, name, type, description, salience, created_at, last_updated_ts) "
        "SELECT c, u, n, 'activity', 'Something the user does: ' || n, 1, $4, $4 "
        "FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, u, n)",
        [c for pair in concept_ids for c in pair],
        [u for u in user_ids for _ in range(2)],
        ["running", "cooking"] * users,
        now - timedelta(days=2),
    )
    conv, conv_user, conv_at = [], [], []
    units, unit_user, unit_conv, unit_n, unit_at, edge_concept = [], [], [], [], [], []
    for index, user_id in enumerate(user_ids):
        for c in range(conversations):
            conversation_id = str(uuid.uuid4())
            at = now - timedelta(days=6 - c % 6, hours=c)
            conv += [conversation_id]
            conv_user += [user_id]
            conv_at += [at]
            for m in range(MEMORIES_PER_CONVERSATION):
                units.append(str(uuid.uuid4()))
                unit_user.append(user_id)
                unit_conv.append(conversation_id)
                unit_n.append(c * MEMORIES_PER_CONVERSATION + m)
                unit_at.append(at)
                edge_concept.append(concept_ids[index][0])
    await pool.execute(
        "INSERT INTO conversations (id, user_id, title, start_time, status, importance_score, context_summary) "
        "SELECT i, u, 'Evening run', a, 'processed', 6, 'The user ran along the river and talked about pacing.' "
        "FROM unnest($1::text[], $2::text[], $3::timestamp[]) AS t(i, u, a)",
        conv,
        conv_user,
        conv_at,
    )
    await pool.execute(
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
        "importance_score, sentiment_score, source_conversation_id) "
        "SELECT m, u, 'Run number ' || n, 'The user ran ' || (5 + n % 10) || ' km at an easy pace and felt strong "
        "afterwards; run number ' || n || '.', a, a, a, 4 + n % 6, 0.5, c "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamp[]) AS t(m, u, c, n, a)",
        units,
        unit_user,
        unit_conv,
        unit_n,
        unit_at,
    )
    await pool.execute(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength) SELECT gen_random_uuid()::text, u, m, 'MemoryUnit', c, 'Concept', "
        "'IS_ABOUT', 0.9 FROM unnest($1::text[], $2::text[], $3::text[]) AS t(m, u, c)",
        units,
        unit_user,
        edge_concept,
    )
    await pool.execute(
        "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at) "
        "SELECT gen_random_uuid()::text, u, u, 'User', d, x, 'ingestion', a FROM unnest($1::text[]) AS u "
        "CROSS JOIN (VALUES ('act_self', 0.5, $2::timestamp), ('know_self', 0.25, $2::timestamp), "
        "('act_self', 0.25, $3::timestamp)) AS g(d, x, a)",
        user_ids,
        now - timedelta(days=2),
        now - timedelta(days=10),
    )
    return user_ids, start.replace(tzinfo=UTC)


async def run(server_dsn: str, redis_url: str, data_dir: Path, args: argparse.Namespace) -> None:
    database_url = await fresh_database(server_dsn)
    pool = await create_pool(database_url, max_size=4)
    redis = await connect_redis(redis_url)
    first = args.start or ("insight" if "insight" in JOBS else "proactive_prompts")
    try:
        user_ids, start = await seed(pool, args.users, args.conversations)
        for user_id in user_ids:
            job_id = Cycle.of(user_id, start).job_id(first)
            await enqueue(redis, pool, JOBS.get(first), {"user_id": user_id, "cycle_start": start}, job_id=job_id)
        with sample_answers_server() as llm:
            env = {key: value for key, value in os.environ.items() if not key.startswith("ORRERY_")}
            env.update(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                ORRERY_DATA_DIR=str(data_dir),
                ORRERY_LOG_LEVEL="WARNING",
                ORRERY_LOG_FORMAT="json",
                OPENAI_BASE_URL=llm.base_url,
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
        await report(pool, user_ids, start, first, wall, args)
    finally:
        await redis.aclose()
        await pool.close()


async def report(
    pool: asyncpg.Pool, user_ids: list[str], start: datetime, first: str, wall: float, args: argparse.Namespace
) -> None:
    users = len(user_ids)
    chain = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE state = 'succeeded') AS done, count(*) FILTER (WHERE state = 'dead') AS dead, "
        "min(started_at) AS first, max(finished_at) AS last FROM runtime.job_runs "
        "WHERE job_name = ANY($1::text[])",
        ["insight", "proactive_prompts", "cycle_report", "projection"],
    )
    reports = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE n = 1) AS one, count(*) FILTER (WHERE n <> 1) AS other FROM ("
        "SELECT u.user_id, count(a.artifact_id) AS n FROM users u LEFT JOIN derived_artifacts a "
        "ON a.user_id = u.user_id AND a.artifact_type = 'cycle_report' WHERE u.user_id = ANY($1::text[]) "
        "GROUP BY u.user_id) AS per_user",
        user_ids,
    )
    reset = await pool.fetchval(
        "SELECT count(*) FROM users WHERE user_id = ANY($1::text[]) AND last_cycle_started_at > $2 "
        "AND concepts_created_in_cycle = 0",
        user_ids,
        start.replace(tzinfo=None),
    )
    projected = await pool.fetchval(
        "SELECT count(DISTINCT user_id) FROM user_graph_projections WHERE user_id = ANY($1::text[])", user_ids
    )
    calls = await pool.fetch(
        "SELECT prompt_name, count(*) AS calls, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion "
        "FROM runtime.llm_calls WHERE user_id = ANY($1::text[]) GROUP BY prompt_name ORDER BY prompt_name",
        user_ids,
    )
    if chain["first"] is None or chain["last"] is None:
        states = await pool.fetch("SELECT job_name, state, error FROM runtime.job_runs LIMIT 5")
        raise SystemExit(f"no chain job finished; the ledger says: {[dict(row) for row in states]}")
    span = (chain["last"] - chain["first"]).total_seconds()
    print(
        f"\ncycle for {users} due users, chain from {first}, {args.conversations} conversations each, "
        f"{args.processes} worker processes x {args.concurrency} jobs"
    )
    print("| users | chain jobs done (dead) | first start → last finish (s) | users/min | worker command wall (s) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {users} | {chain['done']} ({chain['dead']}) | {span:.1f} | {users / span * 60:.0f} | {wall:.1f} |")
    print("\n| prompt | calls/user | prompt tokens/user | completion tokens/user |")
    print("|---|---:|---:|---:|")
    chat_calls = chat_tokens = 0.0
    for row in calls:
        per = row["calls"] / users
        if row["prompt_name"] != "embeddings":
            chat_calls += per
            chat_tokens += (row["prompt"] + row["completion"]) / users
        print(f"| {row['prompt_name']} | {per:.2f} | {row['prompt'] / users:.0f} | {row['completion'] / users:.0f} |")
    print(f"| all chat prompts | {chat_calls:.2f} | {chat_tokens:.0f} (prompt + completion) | |")
    print("\n| exactly one report | other than one | cycle reset | projected |")
    print("|---:|---:|---:|---:|")
    print(f"| {reports['one']} | {reports['other']} | {reset} | {projected} |")
    if reports["one"] != users or reset != users:
        raise SystemExit("not every user got exactly one report and a reset cycle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=7, help="processed conversations per user in the cycle")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker process")
    parser.add_argument(
        "--start", choices=("insight", "proactive_prompts"), help="the chain's first job (default: insight if listed)"
    )
    args = parser.parse_args()
    with bench_servers() as servers:
        asyncio.run(run(servers.postgres_dsn, servers.redis_url, servers.data_dir, args))


if __name__ == "__main__":
    main()
