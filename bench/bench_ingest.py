"""Ingestion benchmark: LLM cost per conversation on the sample set, and throughput against a raw-insert floor.

    .venv/bin/python bench/bench_ingest.py [--conversations 300] [--concurrency 10] [--rounds 3]

1. LLM calls and prompt/completion tokens per conversation: the sample user's conversations ingested through an
   in-process worker, answered by the scripted server from the shipped sample answers (token counts are the scripted
   server's estimate, ~4 characters per token, of the real prompts the agent sends).
2. Throughput: a backlog of --conversations queued ingest jobs (one user each, six messages) worked off by the real
   `run.py worker --burst --processes N` command — arq, ledger, the real openai client over HTTP to a zero-latency
   LLM in another process (a real one runs elsewhere too), validation, the one-transaction write — timed by the
   ledger from the first job's start to the last one's finish, after the processes warmed up on 20 other
   conversations; against the floor: a bare asyncpg script performing the same inserts and updates, one transaction
   per conversation, timed just before and just after the runtime in each round (their mean is the round's floor).
   Both keep --concurrency jobs in flight (split across the worker processes). Medians of --rounds. Also the worker
   processes' CPU per ingestion over the burst (Linux: read from /proc when the backlog is released and when its last
   job succeeded), which does not count time the processes waited for a core.
   Goal: 1 LLM call per conversation; runtime within 3x floor.
Uses DATABASE_URL / REDIS_URL when set, else a throwaway embedded Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from bench_stack import bench_servers, fresh_database
from instant_llm import instant_llm

from agents.ingestion import IngestionAgent
from agents.llm import InMemoryCallLog, LLMClient
from agents.scripted_llm import load_sample_answers
from core.ingestion import IngestionResult
from jobs.catalog import JOBS
from jobs.ingestion import INGEST, ingestion_input, read_ingestion_source
from jobs.maintenance import end_and_enqueue_ingestion
from jobs.runtime import queue as job_queue
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.logs import configure_logging
from jobs.runtime.loop import EventLoopChoice, loop_name
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import load_settings
from store.ingestion_writes import IngestionThresholds, write_ingestion
from store.llm_calls import list_llm_calls
from store.postgres import create_pool
from store.redis import connect_redis
from store.repos import conversations, users
from store.samples.loader import seed_sample_user

ROOT = Path(__file__).resolve().parent.parent
ANSWER: dict[str, Any] = load_sample_answers()[0].answer
MESSAGES = [
    ("assistant", "Morning! How did the long run go?"),
    ("user", "I finally ran 10k without stopping, at an easy pace like coach Dani said."),
    ("assistant", "That is a big milestone. How do your shins feel?"),
    ("user", "A bit sore, so I'm keeping to the ten percent rule and running three times a week."),
    ("assistant", "Sensible. What does this mean for the half marathon?"),
    ("user", "For the first time I believe I can finish it in October."),
]


async def _make_conversations(pool: asyncpg.Pool, count: int, label: str) -> list[tuple[str, str]]:
    """`count` users with one ended conversation each: (user_id, conversation_id)."""
    made = []
    start = datetime.now(UTC) - timedelta(hours=1)
    for index in range(count):
        user = await users.create_user(pool, str(uuid.uuid4()), email=f"{label}-{index}@bench.invalid")
        conversation = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=start)
        for offset, (role, content) in enumerate(MESSAGES):
            await conversations.add_message(
                pool,
                user.user_id,
                conversation.id,
                role=role,
                content=content,
                timestamp=start + timedelta(seconds=offset),
            )
        made.append((user.user_id, conversation.id))
    return made


async def sample_costs(database_url: str, redis_url: str, data_dir: Path) -> list[tuple[str, int, int, int]]:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, log_level="WARNING", llm="scripted"
    )
    pool = await create_pool(database_url)
    redis = await connect_redis(redis_url)
    try:
        seeded = await seed_sample_user(pool, redis, media_dir=settings.resolved_media_root)  # where the job reads
        await end_and_enqueue_ingestion(pool, redis, timeout_minutes=settings.conversation_timeout_minutes, limit=100)
        await run_workers(settings, database_url, redis_url, WorkerOptions((INTERACTIVE,), 4, burst=True), JOBS)
        calls = await list_llm_calls(pool, seeded.user_id)
        rows = []
        for conversation in seeded.conversations:
            mine = [c.call for c in calls if c.call.job_id == f"ingest:{conversation.conversation_id}"]
            rows.append(
                (
                    conversation.key,
                    len(mine),
                    sum(c.prompt_tokens for c in mine),
                    sum(c.completion_tokens for c in mine),
                )
            )
        return rows
    finally:
        await redis.aclose()
        await pool.close()


WARMUP_CONVERSATIONS = 20
"""Ready at once, so the worker processes warm up (first connections, the LLM client, statement caches) on them;
another wave of as many follows until every process has worked some (the first process up could take them all)."""

WARMUP_PER_PROCESS = 5

BACKLOG_DELAY_S = 120.0
"""The backlog is queued to become due this long after the worker command starts (a fresh interpreter per process
takes a few seconds to import everything, and loads the local embedding model before it takes work: up to a minute
when other work keeps the 2 cores busy), and made due at once as soon as the warm-up conversations are done."""


async def runtime_throughput(
    database_url: str, redis_url: str, data_dir: Path, count: int, concurrency: int, processes: int, event_loop: str
) -> tuple[float, float, float | None]:
    """(seconds from the worker command's start to the warm-up done, seconds from the first backlog job's start to
    the last one's finish, by the ledger's clock, and the CPU seconds the worker processes used from the backlog's
    release to its last job's end; None where /proc is not there to tell).

    The worker is the real `run.py worker --burst` command; the jobs are queued beforehand from this process, as the
    web app queues them from its own (bench_dispatch.py measures enqueueing)."""
    with instant_llm(ANSWER) as base_url:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ORRERY_")}
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            ORRERY_DATA_DIR=str(data_dir),
            ORRERY_LOG_LEVEL="WARNING",
            ORRERY_LOG_FORMAT="json",
            OPENAI_BASE_URL=base_url,
            OPENAI_API_KEY="bench",
            ORRERY_EVENT_LOOP=event_loop,
        )
        pool = await create_pool(database_url)
        redis = await connect_redis(redis_url)
        try:
            warmup = [c for _, c in await _make_conversations(pool, WARMUP_CONVERSATIONS, "warmup")]
            backlog = [c for _, c in await _make_conversations(pool, count, "runtime")]
            for conversation_id in warmup:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
            due = datetime.now(UTC) + timedelta(seconds=BACKLOG_DELAY_S)
            for conversation_id in backlog:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id}, run_at=due)
            per_process = -(-concurrency // processes)  # the same jobs in flight as the floor's connections, in all
            command = [
                sys.executable,
                str(ROOT / "run.py"),
                "worker",
                "--burst",
                "--horizon",
                str(BACKLOG_DELAY_S * 2),  # the backlog, due later, keeps the burst going
                "--queue",
                INTERACTIVE,
                "--concurrency",
                str(per_process),
                "--processes",
                str(processes),
            ]
            started = time.time()
            worker = await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
            waiting = asyncio.create_task(worker.communicate())
            at_release = await _release_when_warm(pool, redis, warmup, backlog, waiting, processes, worker.pid)
            burst_cpu = None
            if at_release is not None and await _all_done(pool, backlog, waiting):
                at_end = _tree_cpu(worker.pid)
                burst_cpu = None if at_end is None else at_end - at_release
            _, stderr = await waiting
            if worker.returncode != 0:
                raise SystemExit(f"the worker exited {worker.returncode}:\n{stderr.decode(errors='replace')[-2000:]}")
            spans = {}
            for label, ids in (("warmup", warmup), ("backlog", backlog)):
                spans[label] = await pool.fetchrow(
                    "SELECT count(*) FILTER (WHERE state = 'succeeded') AS done, min(started_at) AS first, "
                    "max(finished_at) AS last FROM runtime.job_runs WHERE job_id = ANY($1::text[])",
                    [f"ingest:{c}" for c in ids],
                )
                if spans[label]["done"] != len(ids):
                    raise SystemExit(f"only {spans[label]['done']} of {len(ids)} {label} ingestions succeeded")
            if spans["backlog"]["first"] < spans["warmup"]["last"]:
                raise SystemExit(f"the workers took over {BACKLOG_DELAY_S} s to warm up; raise BACKLOG_DELAY_S")
            warm_s = spans["warmup"]["last"].timestamp() - started
            return warm_s, (spans["backlog"]["last"] - spans["backlog"]["first"]).total_seconds(), burst_cpu
        finally:
            await redis.aclose()
            await pool.close()


async def _all_done(pool: asyncpg.Pool, backlog: list[str], worker: asyncio.Task[Any]) -> bool:
    """Wait until every backlog job succeeded (True), or the worker command ended first (False)."""
    ids = [f"ingest:{c}" for c in backlog]
    while not worker.done():
        done = await pool.fetchval(
            "SELECT count(*) FROM runtime.job_runs WHERE job_id = ANY($1::text[]) AND state = 'succeeded'", ids
        )
        if done == len(ids):
            return True
        await asyncio.sleep(0.02)
    return False


def _tree_cpu(root: int) -> float | None:
    """CPU seconds used so far by process `root` and its descendants (those alive, and the ones they reaped); None
    without /proc."""
    stats: dict[int, tuple[int, int]] = {}
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        stats[int(entry)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))  # ppid; utime…cstime
    tree = {root}
    for _ in range(len(stats)):  # parents first, however deep
        grown = tree | {pid for pid, (ppid, _) in stats.items() if ppid in tree}
        if grown == tree:
            break
        tree = grown
    ticks = sum(stats[pid][1] for pid in tree if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


async def _release_when_warm(
    pool: asyncpg.Pool,
    redis: Any,
    warmup: list[str],
    backlog: list[str],
    worker: asyncio.Task[Any],
    processes: int,
    worker_pid: int,
) -> float | None:
    """Make the backlog due at once when every worker process has ingested WARMUP_PER_PROCESS warm-up conversations
    (it is up, its connections are open, its statement caches are filled): right then, not after an idle wait, which
    made the burst after it 2-3x slower on the shared VM (measured with the code before this bench waited: 6.07x the
    floor after 30 s idle, 2.72x after none). `warmup` grows by a wave while some process has not had its share.
    Returns the CPU the worker processes had used by then (None without /proc)."""
    while not worker.done():
        rows = await pool.fetch(
            "SELECT worker_id, count(*) AS done FROM runtime.job_runs WHERE job_id = ANY($1::text[]) "
            "AND state = 'succeeded' GROUP BY worker_id",
            [f"ingest:{c}" for c in warmup],
        )
        if sum(r["done"] for r in rows) == len(warmup):
            if len(rows) >= processes and all(r["done"] >= WARMUP_PER_PROCESS for r in rows):
                used = _tree_cpu(worker_pid)
                now_ms = int(time.time() * 1000)
                await job_queue.make_due(redis, INTERACTIVE, [f"ingest:{c}" for c in backlog], now_ms)
                return used
            wave = [c for _, c in await _make_conversations(pool, WARMUP_CONVERSATIONS, f"warmup{len(warmup)}")]
            for conversation_id in wave:
                await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
            warmup.extend(wave)
        await asyncio.sleep(0.05)
    return None


async def _floor_one(conn: asyncpg.Connection, user_id: str, conversation_id: str) -> None:
    """The same rows the ingest job writes for ANSWER, as plain statements in one transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    async with conn.transaction():
        await conn.fetchrow(
            "SELECT status FROM conversations WHERE id = $1 AND user_id = $2 FOR UPDATE", conversation_id, user_id
        )
        ids: dict[str, str] = {}
        for concept in ANSWER["concepts"]:
            ids[concept["key"]] = await conn.fetchval(
                "INSERT INTO concepts (concept_id, user_id, name, type, description, last_updated_ts, metadata) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, name, type) DO UPDATE "
                "SET last_updated_ts = EXCLUDED.last_updated_ts RETURNING concept_id",
                str(uuid.uuid4()),
                user_id,
                concept["name"],
                concept["type"],
                concept["description"],
                now,
                {"normalized_name": concept["name"].lower(), "aliases": []},
            )
        for unit in ANSWER["memory_units"]:
            ids[unit["key"]] = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, last_modified_ts, "
                "importance_score, sentiment_score, source_conversation_id) VALUES ($1,$2,$3,$4,$5,$5,$6,$7,$8)",
                ids[unit["key"]],
                user_id,
                unit["title"],
                unit["content"],
                now,
                unit["importance"],
                unit["sentiment"],
                conversation_id,
            )
        card_sources = [(ids[c["key"]], "Concept") for c in ANSWER["concepts"]]
        card_sources += [(ids[u["key"]], "MemoryUnit") for u in ANSWER["memory_units"] if u["importance"] >= 6]
        await conn.executemany(
            "INSERT INTO cards (card_id, user_id, card_type, source_entity_id, source_entity_type, updated_at) "
            "VALUES ($1, $2, 'card', $3, $4, $5)",
            [(str(uuid.uuid4()), user_id, source, kind, now) for source, kind in card_sources],
        )
        await conn.executemany(
            "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, details) "
            "VALUES ($1, $2, $3, 'MemoryUnit', $4, $5, 'ingestion', $6)",
            [
                (
                    str(uuid.uuid4()),
                    user_id,
                    ids.get(e["about"], e["about"]),
                    e["dim_key"],
                    e["delta"],
                    {"rationale": e["rationale"]},
                )
                for e in ANSWER["growth_events"]
            ],
        )
        await conn.executemany(
            "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
            "relationship_type, strength, description, source_conversation_id) "
            "VALUES ($1, $2, $3, 'MemoryUnit', $4, 'Concept', $5, $6, $7, $8)",
            [
                (
                    str(uuid.uuid4()),
                    user_id,
                    ids[r["source"]],
                    ids[r["target"]],
                    r["type"],
                    r["strength"],
                    r["description"],
                    conversation_id,
                )
                for r in ANSWER["relationships"]
            ],
        )
        await conn.execute(
            "UPDATE conversations SET status = 'processed', title = $3, context_summary = $4, importance_score = $5 "
            "WHERE id = $1 AND user_id = $2",
            conversation_id,
            user_id,
            ANSWER["title"],
            ANSWER["context_summary"],
            ANSWER["importance_score"],
        )
        await conn.execute(
            "UPDATE users SET next_conversation_context_package = $2, "
            "concepts_created_in_cycle = concepts_created_in_cycle + $3 WHERE user_id = $1",
            user_id,
            ANSWER["forward_context"],
            len(ANSWER["concepts"]),
        )


async def floor_throughput(database_url: str, count: int, concurrency: int) -> float:
    pool = await create_pool(database_url, min_size=concurrency, max_size=concurrency)
    try:
        made = await _make_conversations(pool, count, "floor")
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for item in made:
            queue.put_nowait(item)

        async def drain() -> None:
            async with pool.acquire() as conn:
                while not queue.empty():
                    await _floor_one(conn, *queue.get_nowait())

        started = time.perf_counter()
        await asyncio.gather(*(drain() for _ in range(concurrency)))
        return time.perf_counter() - started
    finally:
        await pool.close()


async def breakdown(
    database_url: str, redis_url: str, data_dir: Path, count: int, concurrency: int
) -> tuple[float, float]:
    """The two halves of an ingestion timed alone: load + agent (the job's reads, the openai client over HTTP,
    validation) and the write."""
    settings = load_settings(database_url=database_url, data_dir=data_dir, log_level="WARNING")
    pool = await create_pool(database_url, min_size=concurrency, max_size=concurrency)
    redis = await connect_redis(redis_url)
    gate = asyncio.Semaphore(concurrency)
    results: list[IngestionResult] = []
    try:
        made = await _make_conversations(pool, count, "parts")
        with instant_llm(ANSWER) as base_url:
            async with LLMClient(base_url=base_url, api_key="bench", call_log=InMemoryCallLog()) as client:
                agent = IngestionAgent.from_settings(client, settings)

                async def extract(conversation_id: str) -> None:
                    async with gate:
                        source, turn_context = await read_ingestion_source(pool, redis, conversation_id)
                        assert source is not None
                        results.append(await agent.run(ingestion_input(source, turn_context)))

                started = time.perf_counter()
                await asyncio.gather(*(extract(c) for _, c in made))
                agent_s = time.perf_counter() - started
        thresholds = IngestionThresholds(settings.ingestion_importance_threshold, settings.card_importance_threshold)

        async def write(result: IngestionResult) -> None:
            async with gate:
                await write_ingestion(pool, result, thresholds)

        started = time.perf_counter()
        await asyncio.gather(*(write(r) for r in results))
        return agent_s, time.perf_counter() - started
    finally:
        await redis.aclose()
        await pool.close()


async def run(
    server_dsn: str,
    redis_url: str,
    data_dir: Path,
    count: int,
    concurrency: int,
    rounds: int,
    processes: int,
    event_loop: EventLoopChoice,
) -> None:
    costs = await sample_costs(await fresh_database(server_dsn), redis_url, data_dir)
    print("\nLLM cost per conversation (sample user, scripted sample answers)\n")
    print(f"| {'conversation':<18} | LLM calls | prompt tokens | completion tokens |")
    print(f"|{'-' * 20}|----------:|--------------:|------------------:|")
    for key, calls, prompt, completion in costs:
        print(f"| {key:<18} | {calls:>9} | {prompt:>13} | {completion:>17} |")
    ingested = [row for row in costs if row[1]]
    print(
        f"| {'mean (with a call)':<18} | {sum(r[1] for r in ingested) / len(ingested):>9.2f} | "
        f"{sum(r[2] for r in ingested) / len(ingested):>13.0f} | {sum(r[3] for r in ingested) / len(ingested):>17.0f} |"
    )

    samples: dict[str, list[float]] = {"runtime": [], "floor": [], "agent": [], "write": [], "warmup": [], "cpu": []}
    for round_number in range(1, rounds + 1):
        print(f"round {round_number}/{rounds}…", file=sys.stderr)
        await redis_flush(redis_url)
        before = await floor_throughput(await fresh_database(server_dsn), count, concurrency)
        runtime_db = await fresh_database(server_dsn)
        warmup_s, runtime_s, burst_cpu = await runtime_throughput(
            runtime_db, redis_url, data_dir, count, concurrency, processes, event_loop
        )
        if burst_cpu is not None:
            samples["cpu"].append(burst_cpu / count * 1000)
        samples["warmup"].append(warmup_s)
        samples["runtime"].append(runtime_s)
        after = await floor_throughput(await fresh_database(server_dsn), count, concurrency)
        samples["floor"].append((before + after) / 2)  # one floor swung 0.42-0.66 s between rounds on this VM
        agent_s, write_s = await breakdown(await fresh_database(server_dsn), redis_url, data_dir, count, concurrency)
        samples["agent"].append(agent_s)
        samples["write"].append(write_s)
    median = {name: statistics.median(values) for name, values in samples.items() if values}
    ratios = [r / f for r, f in zip(samples["runtime"], samples["floor"], strict=True)]
    floor_s = median["floor"]

    def row(label: str, seconds: float) -> str:
        return f"| {label} | {seconds:.2f} | {count / seconds:.1f} | {seconds / floor_s:.2f}x |"

    print(
        f"\nIngestion throughput, {count} conversations, {concurrency} at once ({processes} worker processes on "
        f"{loop_name(event_loop)}; the floor on asyncio's loop), median of {rounds} rounds\n"
    )
    print("| path | seconds | conversations/s | time vs floor |")
    print("|---|---:|---:|---:|")
    print(row("Orrery: queued backlog → worker → LLM over HTTP → one-transaction write", median["runtime"]))
    print(row("part: load + agent alone (reads, openai client, validation)", median["agent"]))
    print(row("part: write_ingestion alone (one transaction)", median["write"]))
    print(row("floor: bare asyncpg, same inserts", floor_s))
    print(
        f"\nruntime/floor per round (each round measures both within seconds, so machine drift cancels): "
        f"{', '.join(f'{r:.2f}x' for r in ratios)}, median {statistics.median(ratios):.2f}x; warm-up run "
        f"(until every process ingested {WARMUP_PER_PROCESS}, not in the table): {median['warmup']:.2f} s"
    )
    if samples["cpu"]:
        print(
            f"worker processes' CPU per ingestion over the burst: {', '.join(f'{c:.2f}' for c in samples['cpu'])} ms, "
            f"median {median['cpu']:.2f} ms"
        )


async def redis_flush(redis_url: str) -> None:
    client = await connect_redis(redis_url)
    await client.flushdb()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="measure this many times and report medians")
    parser.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the workers' event loop (ORRERY_EVENT_LOOP; auto: uvloop where installed)",
    )
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per CPU core)"
    )
    options = parser.parse_args()
    configure_logging("WARNING", "json")
    with bench_servers() as servers:
        workload = (options.conversations, options.concurrency, options.rounds, options.processes, options.event_loop)
        asyncio.run(run(servers.postgres_dsn, servers.redis_url, servers.data_dir, *workload))


if __name__ == "__main__":
    main()
