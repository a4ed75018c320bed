"""The fault campaign's machinery: real `run.py worker` subprocesses to kill and restart, private Postgres and Redis
servers to stop mid-burst, seeded ingestion backlogs, and the exactly-once checks every fault test ends with.

Everything is bounded: every wait ends when nothing moves for STALL_S (progress, not a wall clock sized for a quiet
machine), every loop has a count. The LLM is the scripted OpenAI-compatible
server (agents/scripted_llm.py) in this process, answering every conversation with the shipped sample answer.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer, ScriptedReply, load_sample_answers
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from store import embedded, ledger
from store.migrate import migrate
from store.postgres import connect
from store.repos import conversations, users
from tests.cli.runner import ROOT
from tests.jobs.conftest import (  # noqa: F401  (run_burst, settings, llm_server: the in-process worker)
    WorkerProcesses,
    cli_env,
    llm_server,
    run_burst,
    settings,
    wait_progressing,
)

SAMPLE: KeyedAnswer = load_sample_answers()[0]
"""Every seeded conversation quotes this sample's match, so the scripted server answers it with this answer."""

MESSAGES = (
    ("assistant", "Morning! How did the long run go?"),
    ("user", f"{SAMPLE.match}, at an easy pace like coach Dani said."),
    ("assistant", "That is a big milestone. How do your shins feel?"),
    ("user", "A bit sore, so I'm keeping to the ten percent rule."),
)

NO_SWEEP = json.dumps({"sweep_timeouts": "off"})
"""The minute sweep re-enqueues every `ended` conversation: off where it would hide a lost job."""

MEMORY_KINDS = ("memory_units", "growth_events", "cards", "edges")


# --- the LLM ------------------------------------------------------------------------------------------------------


@contextmanager
def sample_llm(think_s: float, replies: int = 2000) -> Iterator[ScriptedLLMServer]:
    """The sample answer for every seeded conversation, each after `think_s` (so faults land mid-call too)."""
    with ScriptedLLMServer(keyed_answers=[SAMPLE]) as server:
        server.enqueue(*[ScriptedReply.json(SAMPLE.answer, delay_s=think_s)] * replies)
        yield server


@pytest.fixture
def fault_llm() -> Iterator[ScriptedLLMServer]:
    with sample_llm(0.05) as server:
        yield server


def llm_env(server: ScriptedLLMServer, **extra: str) -> dict[str, str]:
    """Worker environment for the scripted server: one HTTP try per LLM call, so calls are counted exactly."""
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "test-key",
        "ORRERY_LLM_TIMEOUT_S": "5",
        "ORRERY_LLM_MAX_RETRIES": "0",
        "ORRERY_CRON": NO_SWEEP,
        **extra,
    }


# --- workers ------------------------------------------------------------------------------------------------------


class Fleet:
    """`size` worker subprocesses kept at strength: a killed one is replaced at once, like a supervisor would."""

    def __init__(self, workers: WorkerProcesses, size: int, *args: str) -> None:
        self.workers = workers
        self.args = args
        self.live = [workers.start(*args) for _ in range(size)]
        self.kills = 0

    def kill(self, victim: subprocess.Popen[bytes]) -> None:
        """SIGKILL one worker and start its replacement."""
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1
        self.live[self.live.index(victim)] = self.workers.start(*self.args)

    def kill_random(self, rng: random.Random) -> None:
        self.kill(rng.choice(self.live))

    def by_pid(self, pid: int) -> subprocess.Popen[bytes] | None:
        return next((proc for proc in self.live if proc.pid == pid), None)

    def dead(self) -> list[str]:
        """One line per live-list worker that exited on its own, with its exit code and last log lines."""
        lines = []
        for index, proc in enumerate(self.workers.procs):
            if proc in self.live and proc.poll() is not None:
                tail = self.workers.log(index).strip().splitlines()[-3:]
                lines.append(f"worker pid {proc.pid} exited {proc.returncode}: {' | '.join(tail)}")
        return lines


def worker_group(database_url: str, redis_url: str, tmp_path: Path, env: dict[str, str]) -> WorkerProcesses:
    return WorkerProcesses(cli_env(database_url, redis_url, tmp_path, **env), tmp_path)


# --- seeding and waiting ------------------------------------------------------------------------------------------


async def seed_backlog(pool: asyncpg.Pool, users_count: int, per_user: int, label: str) -> list[tuple[str, str]]:
    """`users_count` users with `per_user` ended conversations each: [(user_id, conversation_id)]."""
    made = []
    start = datetime.now(UTC) - timedelta(hours=1)
    for u in range(users_count):
        user = await users.create_user(pool, str(uuid.uuid4()), email=f"{label}-{u}@faults.invalid", name="Maya")
        for _ in range(per_user):
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


async def enqueue_ingestions(redis: Any, pool: asyncpg.Pool, conversation_ids: Sequence[str]) -> None:
    for conversation_id in conversation_ids:
        result = await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id})
        assert result.enqueued, f"ingest of {conversation_id} was not enqueued"


async def processed_count(pool: asyncpg.Pool, conversation_ids: Sequence[str]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM conversations WHERE id = ANY($1::text[]) AND status = 'processed'",
        list(conversation_ids),
    )
    return count


STALL_S = 180.0
"""A fault test fails when nothing moves for this long (no conversation processed, no step finished): far past any
takeover (lease 2 s), restart or outage the tests make, and past a worker loading the local embedding model while
the machine is loaded (about 60 s seen with three loading at once on two busy cores); a passing test never waits
for it."""


async def _count_or(last: int, count: Awaitable[int]) -> int:
    """The count, or the last one seen while the test's own Postgres connection is away (across a restart)."""
    try:
        return await count
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return last


async def wait_processed(
    pool: asyncpg.Pool, conversation_ids: Sequence[str], fleet: Fleet | None = None, *, at_least: int | None = None
) -> None:
    """Until every conversation (or `at_least` of them) is processed. Waits on progress, not a wall clock sized for
    a quiet machine (issue 18 defect 10: a storm once failed at 198 of 200 within a fixed 90 s on a loaded box): it
    fails only when no conversation was processed for STALL_S, with the count and any worker that died."""
    wanted = len(conversation_ids) if at_least is None else at_least
    seen = 0

    async def measure() -> int:
        nonlocal seen
        seen = await _count_or(seen, processed_count(pool, conversation_ids))
        return seen

    try:
        await wait_progressing(measure, lambda done: done >= wanted, stall_s=STALL_S, interval=0.2)
    except AssertionError:
        died = fleet.dead() if fleet is not None else []
        left = await pool.fetch(
            "SELECT id, status FROM conversations WHERE id = ANY($1::text[]) AND status <> 'processed' LIMIT 5",
            list(conversation_ids),
        )
        raise AssertionError(
            f"{seen} of {len(conversation_ids)} conversations processed, none more for {STALL_S:.0f} s; "
            f"not processed: {[(r['id'], r['status']) for r in left]}; workers died: {died}"
        ) from None
    if at_least is None:
        await _wait_runs_final(pool, [f"ingest:{c}" for c in conversation_ids], fleet)


async def _wait_runs_final(pool: asyncpg.Pool, job_ids: Sequence[str], fleet: Fleet | None) -> None:
    """Until every job's latest ledger run is final. A run records its outcome after its write commits, and one
    whose ledger was away right then (a Postgres restart) records it on its next attempt, so a conversation is
    `processed` a moment, or a retry delay, before its run `succeeded`: the checks must not read the ledger in
    between (CI once caught the last run of a restart still `running`). A run that never settles still fails here,
    with its state, once nothing has settled for STALL_S."""
    states: dict[str, str] = {}

    async def measure() -> int:
        nonlocal states
        # across a restart the test's own connection fails: the last states seen stand
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            states = dict(await ledger.latest_states(pool, list(job_ids)))
        return sum(state in ledger.FINAL_STATES for state in states.values())

    try:
        await wait_progressing(measure, lambda final: final >= len(job_ids), stall_s=STALL_S, interval=0.2)
    except AssertionError:
        active = {job_id: state for job_id, state in states.items() if state not in ledger.FINAL_STATES}
        died = fleet.dead() if fleet is not None else []
        raise AssertionError(
            f"{len(job_ids) - len(active)} of {len(job_ids)} runs final, none more for {STALL_S:.0f} s; "
            f"still active: {dict(list(active.items())[:5])}; workers died: {died}"
        ) from None


# --- the exactly-once checks --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one fault test checked: the README's Reliability figures."""

    jobs: int = 0
    rows_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    """Succeeded runs beyond one per job: a finish Redis could not acknowledge, run again as a no-op."""

    def line(self, name: str, **extra: int) -> str:
        figures = {"jobs": self.jobs, **extra, "rows_checked": self.rows_checked}
        figures.update(lost=self.lost, duplicated=self.duplicated, redelivered=self.redelivered)
        return f"FAULTS {name}: " + " ".join(f"{key}={value}" for key, value in figures.items())


async def conversation_rows(pool: asyncpg.Pool, conversation_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per conversation: the memory rows it produced, counted by the conversation they name."""
    records = await pool.fetch(
        """
        SELECT c.id,
          (SELECT count(*) FROM memory_units m WHERE m.source_conversation_id = c.id) AS memory_units,
          (SELECT count(*) FROM growth_events g WHERE g.details->>'source_conversation_id' = c.id) AS growth_events,
          (SELECT count(*) FROM cards k JOIN memory_units m ON m.muid = k.source_entity_id
            WHERE m.source_conversation_id = c.id) AS cards,
          (SELECT count(*) FROM runtime.knowledge_edges e WHERE e.source_conversation_id = c.id) AS edges
        FROM conversations c WHERE c.id = ANY($1::text[])
        """,
        list(conversation_ids),
    )
    return {r["id"]: {kind: r[kind] for kind in MEMORY_KINDS} for r in records}


async def user_concepts(pool: asyncpg.Pool, user_ids: Sequence[str]) -> dict[str, int]:
    records = await pool.fetch(
        "SELECT u.user_id, (SELECT count(*) FROM concepts c WHERE c.user_id = u.user_id) AS n "
        "FROM users u WHERE u.user_id = ANY($1::text[])",
        list(user_ids),
    )
    return {r["user_id"]: r["n"] for r in records}


async def check_exactly_once(
    pool: asyncpg.Pool, backlog: Sequence[tuple[str, str]], reference: tuple[str, str], *, max_llm_calls: int = 5
) -> Tally:
    """Compare every conversation of `backlog` with `reference` (ingested once, with no fault): processed, the same
    rows per conversation and concepts per user, no duplicate concept, a succeeded run per job and at most one that
    wrote, every ledger row finished, and a bounded number of recorded LLM calls per job. Returns the figures; fails
    on any difference."""
    tally = Tally(jobs=len(backlog))
    conversation_ids = [c for _, c in backlog]
    user_ids = sorted({u for u, _ in backlog})
    expected = (await conversation_rows(pool, [reference[1]]))[reference[1]]
    answer = SAMPLE.answer
    assert expected["memory_units"] == len(answer["memory_units"]) > 0, expected
    assert expected["edges"] == len(answer["relationships"]) and expected["growth_events"] == len(
        answer["growth_events"]
    ), expected
    expected_concepts = (await user_concepts(pool, [reference[0]]))[reference[0]]
    assert expected_concepts == len(answer["concepts"])

    problems: list[str] = []
    statuses = dict(
        await pool.fetch("SELECT id, status FROM conversations WHERE id = ANY($1::text[])", conversation_ids)
    )
    not_processed = {c: s for c, s in statuses.items() if s != "processed"}
    if not_processed:
        problems.append(f"{len(not_processed)} conversations not processed: {dict(list(not_processed.items())[:5])}")
    for conversation_id, counts in (await conversation_rows(pool, conversation_ids)).items():
        for kind in MEMORY_KINDS:
            tally.rows_checked += counts[kind]
            tally.lost += max(expected[kind] - counts[kind], 0)
            tally.duplicated += max(counts[kind] - expected[kind], 0)
        if counts != expected:
            problems.append(f"conversation {conversation_id}: {counts}, a clean run wrote {expected}")
    for user_id, count in (await user_concepts(pool, user_ids)).items():
        tally.rows_checked += count
        tally.lost += max(expected_concepts - count, 0)
        tally.duplicated += max(count - expected_concepts, 0)
        if count != expected_concepts:
            problems.append(f"user {user_id}: {count} concepts, a clean run made {expected_concepts}")
    twins = await pool.fetch(
        "SELECT user_id, metadata->>'normalized_name' AS name, count(*) AS n FROM concepts "
        "WHERE user_id = ANY($1::text[]) GROUP BY 1, 2 HAVING count(*) > 1",
        user_ids,
    )
    problems += [f"user {r['user_id']}: concept {r['name']!r} {r['n']} times" for r in twins]

    job_ids = [f"ingest:{c}" for c in conversation_ids]
    runs = await pool.fetch(
        "SELECT job_id, state, count(*) AS n, string_agg(DISTINCT error_class, ',') AS errors, "
        "count(*) FILTER (WHERE result->>'outcome' = 'written') AS written "
        "FROM runtime.job_runs WHERE job_id = ANY($1::text[]) GROUP BY 1, 2",
        job_ids,
    )
    states = {(r["job_id"], r["state"]): r for r in runs}
    for job_id in job_ids:
        succeeded = states.get((job_id, "succeeded"))
        if succeeded is None:
            problems.append(f"{job_id}: no succeeded run")
        elif succeeded["written"] > 1:
            problems.append(f"{job_id}: {succeeded['written']} runs wrote memory")
        else:
            tally.redelivered += succeeded["n"] - 1  # a delivery repeated after its finish: a no-op by design
    for (job_id, state), r in states.items():
        if state != "succeeded":
            problems.append(f"{job_id}: {r['n']} run(s) {state} ({r['errors']})")
    calls = await pool.fetch(
        "SELECT job_id, count(*) AS n FROM runtime.llm_calls WHERE job_id = ANY($1::text[]) GROUP BY 1 "
        "HAVING count(*) > $2",
        job_ids,
        max_llm_calls,
    )
    problems += [f"{r['job_id']}: {r['n']} LLM calls" for r in calls]
    assert not problems, f"{len(problems)} exactly-once violations:\n" + "\n".join(problems[:20])
    return tally


async def ingest_reference(pool: asyncpg.Pool, redis: Any, fleet: Fleet) -> tuple[str, str]:
    """One conversation of its own user ingested with no fault: the clean run every other one is compared with."""
    reference = (await seed_backlog(pool, 1, 1, "reference"))[0]
    await enqueue_ingestions(redis, pool, [reference[1]])
    await wait_processed(pool, [reference[1]], fleet)
    return reference


# --- private servers (to stop and start without disturbing the session's shared ones) --------------------------


def start_postgres_elsewhere(data_dir: Path) -> str:
    """Start (or restart) a private embedded Postgres from a child process: pgserver remembers the servers a process
    started, so this process could not start one again after stopping it."""
    code = "import sys, pathlib; from store import embedded; print(embedded.start_postgres(pathlib.Path(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@dataclass
class PrivatePostgres:
    data_dir: Path
    database_url: str

    def stop(self) -> None:
        assert embedded.stop_postgres(self.data_dir), f"the private Postgres in {self.data_dir} was not running"

    def start(self) -> None:
        start_postgres_elsewhere(self.data_dir)


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A Postgres server of this test's own, migrated, that the test may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="orrery-faults-pg-"))
    try:
        dsn = start_postgres_elsewhere(data_dir)
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield PrivatePostgres(data_dir, dsn)
    finally:
        embedded.remove_data_dir(data_dir)


@dataclass
class PrivateRedis:
    data_dir: Path
    url: str

    def stop(self) -> None:
        """SHUTDOWN SAVE: what an orderly restart (a deploy, a failover) does; the AOF keeps every queued job."""
        assert embedded.stop_redis(self.data_dir), f"the private Redis in {self.data_dir} was not running"

    def start(self) -> None:
        assert embedded.start_redis(self.data_dir) == self.url


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis server of this test's own (AOF on, as in production) that the test may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="orrery-faults-redis-"))
    try:
        yield PrivateRedis(data_dir, embedded.start_redis(data_dir))
    finally:
        embedded.remove_data_dir(data_dir)


# --- the documented producer route ------------------------------------------------------------------------------


def documented_enqueue_script() -> str:
    """The Lua script docs/jobs.md gives TypeScript producers, read from the page so the test follows the docs."""
    page = (ROOT / "docs" / "jobs.md").read_text(encoding="utf-8")
    found = re.search(r"const ENQUEUE = `(.*?)`;", page, re.DOTALL)
    assert found, "docs/jobs.md no longer shows `const ENQUEUE = `...`;`"
    return found.group(1)


def raw_record(conversation_id: str, **fields: Any) -> str:
    """The record a TypeScript producer writes, as docs/jobs.md shows it."""
    args = {"conversation_id": conversation_id}
    record: dict[str, Any] = {"t": None, "f": "ingest", "a": [], "k": args, "et": int(time.time() * 1000)}
    return json.dumps({**record, **fields})
