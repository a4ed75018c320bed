"""`jobs failed` and `jobs queues` show what only Redis knows: dead letters the ledger could not hold, and workers
that are alive but degraded (waiting for a store), which must not count as serving."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from jobs.runtime.keys import BATCH, INTERACTIVE, UNRECORDED_DEAD_KEY, health_key
from tests.cli.runner import run_cli
from tests.jobs.conftest import cli_env


async def test_jobs_failed_lists_the_dead_letters_kept_in_redis(
    database_url: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    entry = {
        "job_id": "kept-1",
        "queue": INTERACTIVE,
        "record": json.dumps({"f": "ingest", "k": {"conversation_id": "x"}}),
        "error_class": "NotRunnable",
        "error": "the ledger cannot record this job",
        "at": "2026-11-26T01:00:00+00:00",
    }
    await redis_client.lpush(UNRECORDED_DEAD_KEY, json.dumps(entry), b"not json")  # type: ignore[misc]
    env = cli_env(database_url, redis_url, tmp_path)

    listed = json.loads(run_cli("jobs", "failed", "--json", env=env).stdout)
    kept = [item for item in listed if not item["in_ledger"]]
    assert [item["job_id"] for item in kept] == ["?", "kept-1"]  # newest first; an unreadable entry is shown too
    assert kept[1]["job_name"] == "ingest" and kept[1]["error"] == "the ledger cannot record this job"

    only_other = json.loads(run_cli("jobs", "failed", "--json", "--job", "sweep_timeouts", env=env).stdout)
    assert only_other == []
    text = run_cli("jobs", "failed", env=env)
    assert "kept-1 (ingest, interactive)" in text.stdout and "could not hold" in text.stdout, text.stdout


async def test_jobs_queues_counts_a_degraded_worker_apart(
    database_url: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    await redis_client.set(health_key(INTERACTIVE, "host:1"), b"ok 2026-11-26T01:00:00Z j_complete=1", ex=30)
    await redis_client.set(health_key(INTERACTIVE, "host:2"), b"degraded: Postgres unreachable for 12 s", ex=30)
    await redis_client.set(health_key(BATCH, "host:2"), b"degraded: Redis unreachable for 3 s", ex=30)

    shown = run_cli("jobs", "queues", "--json", env=cli_env(database_url, redis_url, tmp_path))
    stats = {s["queue"]: s for s in json.loads(shown.stdout)}
    assert (stats[INTERACTIVE]["live_workers"], stats[INTERACTIVE]["degraded_workers"]) == (1, 1)
    assert (stats[BATCH]["live_workers"], stats[BATCH]["degraded_workers"]) == (0, 1)
