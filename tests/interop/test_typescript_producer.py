"""clients/typescript: its job table is generated from the registry and current, and the compiled module, run by
node with ioredis against the test Redis, enqueues jobs a real worker (`run.py worker --burst`) runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from clients import generate
from store import ledger
from store.repos import conversations, users
from tests.interop.node import NODE_MODULES, ROOT, require_node, run_node

TS_DIR = ROOT / "clients" / "typescript"


def test_generated_files_are_current() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, content in generate.outputs().items()
        if path.read_text(encoding="utf-8") != content
    ]
    assert stale == [], f"run `.venv/bin/python -m clients.generate` and commit: {stale}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/typescript compiled with its own strict tsconfig (a type error fails here) into an ES module."""
    require_node("typescript", "ioredis")
    out = tmp_path_factory.mktemp("orrery-ts")
    done = subprocess.run(
        [str(NODE_MODULES / ".bin" / "tsc"), "-p", str(TS_DIR), "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"tsc failed:\n{done.stdout}{done.stderr}"
    (out / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    return out / "index.js"


def drive(compiled: Path, redis_url: str, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    output = run_node("producer_driver.mjs", str(compiled), redis_url, json.dumps(list(calls)))
    results: list[dict[str, Any]] = json.loads(output)
    return results


async def test_the_web_app_asks_for_its_corrections_to_be_applied(
    compiled: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    first, again = drive(
        compiled,
        redis_url,
        {"fn": "enqueueCorrections", "args": ["u-1"]},
        {"fn": "enqueueCorrections", "args": ["u-1"]},
    )
    assert (first["result"]["jobId"], first["result"]["queue"], first["result"]["enqueued"]) == (
        "apply_corrections:u-1",
        "batch",
        True,
    )
    assert again["result"]["enqueued"] is False
    record = json.loads(await redis_client.get("arq:job:apply_corrections:u-1"))
    assert (record["f"], record["k"]) == ("apply_corrections", {"user_id": "u-1"})


async def test_records_dedupe_delays_and_refused_arguments(
    compiled: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    run_at = int(time.time() * 1000) + 3_600_000
    before = int(time.time() * 1000)
    first, again, delayed, bad, unknown_queue = drive(
        compiled,
        redis_url,
        {"fn": "enqueueIngestion", "args": ["c-1"]},
        {"fn": "enqueueIngestion", "args": ["c-1"]},
        {"fn": "enqueueJob", "args": ["diag.echo", {"sleep_s": 0.5}], "options": {"runAt": run_at, "jobId": "x-1"}},
        {"fn": "enqueueJob", "args": ["ingest", {"conversation_id": "", "colour": "red"}]},
        {"fn": "enqueueJob", "args": ["ingest", {"conversation_id": "c-2"}], "options": {"queue": "nope"}},
    )
    assert first["result"]["jobId"] == "ingest:c-1" and first["result"]["enqueued"] is True
    assert first["result"]["queue"] == "interactive"
    assert again["result"]["enqueued"] is False  # the dedupe check: one queued job per id

    record = json.loads(await redis_client.get("arq:job:ingest:c-1"))
    assert record == {
        "t": None,
        "f": "ingest",
        "a": [],
        "k": {"conversation_id": "c-1", "reprocess": False},
        "et": record["et"],
    }
    assert isinstance(record["et"], int) and before <= record["et"] <= int(time.time() * 1000)
    assert await redis_client.zscore("orrery:queue:interactive", "ingest:c-1") == first["result"]["runAtMs"]

    assert delayed["result"] == {**delayed["result"], "jobId": "x-1", "enqueued": True, "runAtMs": run_at}
    assert await redis_client.zscore("orrery:queue:interactive", "x-1") == run_at
    ttl_ms = await redis_client.pttl("arq:job:x-1")
    assert 86_400_000 + 3_500_000 < ttl_ms <= 86_400_000 + 3_600_000  # a day past the run time, as arq keeps it

    assert bad["error"] == (
        "JobArgumentsError: job 'ingest': invalid arguments: conversation_id: at least 1 characters; "
        "colour: not an argument of this job"
    )
    assert unknown_queue["error"].startswith('JobArgumentsError: unknown queue "nope"')
    assert await redis_client.exists("arq:job:ingest:c-2") == 0


async def test_dates_are_checked_as_pydantic_reads_them(compiled: Path, redis_url: str) -> None:
    """The cycle jobs take a datetime (`cycle_start`) and proactive prompts' daily run a date: the producer refuses
    what the worker would, and passes ISO 8601 through."""
    good, bad, day, bad_day = drive(
        compiled,
        redis_url,
        {"fn": "enqueueJob", "args": ["cycle_report", {"user_id": "u-1", "cycle_start": "2026-11-19T00:00:00Z"}]},
        {"fn": "enqueueJob", "args": ["cycle_report", {"user_id": "u-2", "cycle_start": "last week"}]},
        {"fn": "enqueueJob", "args": ["proactive_prompts", {"user_id": "u-3", "daily": "2026-11-19"}]},
        {"fn": "enqueueJob", "args": ["proactive_prompts", {"user_id": "u-4", "daily": "2026-11-19T00:00:00Z"}]},
    )
    assert good["result"]["enqueued"] is True
    assert "cycle_start: must be an ISO 8601 date and time" in bad["error"]
    assert day["result"]["enqueued"] is True and "daily: must be an ISO 8601 date" in bad_day["error"]


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


async def test_an_ingestion_enqueued_from_typescript_is_run_by_a_real_worker(
    compiled: Path,
    pool: asyncpg.Pool,
    database_url: str,
    redis_url: str,
    llm_server: ScriptedLLMServer,
    tmp_path: Path,
) -> None:
    user = await users.create_user(pool, str(uuid.uuid4()), email="web@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k, no stops!")
    llm_server.enqueue(ScriptedReply.json(load_sample_answers()[0].answer))

    [enqueued] = drive(compiled, redis_url, {"fn": "enqueueIngestion", "args": [conversation.id]})
    assert enqueued["result"]["enqueued"] is True

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORRERY_", "OPENAI_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ORRERY_DATA_DIR=str(tmp_path),
        ORRERY_POLL_DELAY_S="0.01",
        OPENAI_BASE_URL=llm_server.base_url,
        OPENAI_API_KEY="test-key",
        ORRERY_LOG_FORMAT="json",
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run.py"),
        "worker",
        "--burst",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(worker.communicate(), 120)
    assert worker.returncode == 0, stderr.decode(errors="replace")[-3000:]

    run = await ledger.latest_run(pool, f"ingest:{conversation.id}")
    assert run is not None and run.state == "succeeded", run
    processed = await conversations.get_conversation(pool, user.user_id, conversation.id)
    assert processed is not None and processed.status == "processed"
    assert await pool.fetchval("SELECT count(*) FROM memory_units WHERE source_conversation_id = $1", conversation.id)
