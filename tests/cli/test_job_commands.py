"""The operator's job commands (issue 21, items 7, 8, 9 and 12): unknown ids and names exit 2 with close names,
`trigger` refuses a job naming a conversation or user that does not exist, `--wait` says at once that no worker
serves the queue, and `jobs runs`, `jobs cancel` and `jobs purge`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, in_progress_key, job_key, queue_key
from store import ledger
from store.repos import conversations, users
from tests.cli.runner import assert_one_line_error, run_cli
from tests.jobs.conftest import cli_env


@pytest.fixture
def env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(database_url, redis_url, tmp_path)


async def test_unknown_names_and_ids_exit_2(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, env: dict[str, str]
) -> None:
    assert_one_line_error(run_cli("trigger", "ingset", env=env), "unknown job 'ingset'; did you mean 'ingest'")
    assert_one_line_error(run_cli("jobs", "failed", "--job", "nope", env=env), "--job: unknown job 'nope'")
    assert_one_line_error(run_cli("jobs", "runs", "--job", "cycle_reprot", env=env), "did you mean 'cycle_report'")
    assert_one_line_error(run_cli("reconcile", "--user", "nobody", env=env), "no user 'nobody'")

    missing = run_cli("trigger", "ingest", "--arg", "conversation_id=nope", "--wait", env=env)
    assert_one_line_error(missing, "conversation_id: no conversation 'nope' in Postgres (nothing was enqueued)")
    assert_one_line_error(run_cli("trigger", "insight", "-a", "user_id=nobody", env=env), "no user 'nobody'")
    gone = run_cli("trigger", "media", "-a", "media_id=nothing", env=env)
    assert_one_line_error(gone, "media_id: no media item 'nothing' in Postgres (nothing was enqueued)")
    assert await pool.fetchval("SELECT count(*) FROM runtime.job_runs") == 0
    assert await redis_client.zcard(queue_key(INTERACTIVE)) == 0

    await users.create_user(pool, "u-known", email="known@example.org")
    conversation = await conversations.create_conversation(pool, "u-known", status="ended")
    known = run_cli("trigger", "ingest", "--arg", f"conversation_id={conversation.id}", env=env)
    assert known.returncode == 0 and known.stdout.splitlines()[0] == f"ingest:{conversation.id}", known.stderr


def test_wait_says_at_once_that_no_worker_serves_the_queue(env: dict[str, str]) -> None:
    result = run_cli("trigger", "sweep_timeouts", "--wait", "--timeout", "0.5", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "warning: no live worker serves the interactive queue: the job waits until one starts" in result.stderr
    assert "run.py worker --queue interactive" in result.stderr


async def test_jobs_runs_filters_by_job_state_and_time(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, env: dict[str, str]
) -> None:
    first = await enqueue(redis_client, pool, ECHO, {"mark": "a"}, job_id="echo-a", defer_by=timedelta(hours=1))
    await enqueue(redis_client, pool, ECHO, {"mark": "b"}, job_id="echo-b", defer_by=timedelta(hours=1))
    await pool.execute("UPDATE runtime.job_runs SET enqueued_at = now() - interval '3 hours' WHERE job_id = 'echo-a'")
    assert first.run_id is not None
    await ledger.finish_run(pool, first.run_id, state="dead", duration_ms=1, error_class="X", error="boom")

    listed = json.loads(run_cli("jobs", "runs", "--job", "diag.echo", "--json", env=env).stdout)
    assert [run["job_id"] for run in listed] == ["echo-b", "echo-a"] and listed[0]["args"]["mark"] == "b"
    recent = json.loads(run_cli("jobs", "runs", "--since", "1h", "--json", env=env).stdout)
    assert [run["job_id"] for run in recent] == ["echo-b"]
    dead = json.loads(run_cli("jobs", "runs", "--state", "dead", "--json", env=env).stdout)
    assert [run["job_id"] for run in dead] == ["echo-a"]
    assert_one_line_error(run_cli("jobs", "runs", "--state", "gone", env=env), "--state 'gone': expected one of")
    text = run_cli("jobs", "runs", env={**env, "COLUMNS": "80"})
    assert "echo-a" in text.stdout and "X: boom" in text.stdout and "…" not in text.stdout


async def test_cancel_a_queued_job(pool: asyncpg.Pool, redis_client: aioredis.Redis, env: dict[str, str]) -> None:
    queued = await enqueue(redis_client, pool, ECHO, {}, job_id="to-cancel", defer_by=timedelta(hours=1))
    cancelled = run_cli("jobs", "cancel", "to-cancel", env=env)
    assert cancelled.returncode == 0 and "to-cancel cancelled" in cancelled.stdout, cancelled.stderr
    run = await ledger.latest_run(pool, "to-cancel")
    assert run is not None and run.id == queued.run_id and (run.state, run.error_class) == ("cancelled", "Cancelled")
    assert await redis_client.exists(job_key("to-cancel")) == 0
    assert await redis_client.zscore(queue_key(INTERACTIVE), "to-cancel") is None
    assert_one_line_error(run_cli("jobs", "cancel", "to-cancel", env=env), "job to-cancel is cancelled: nothing")
    assert_one_line_error(run_cli("jobs", "cancel", "nobody", env=env), "is not in the ledger or in Redis")
    assert json.loads(run_cli("jobs", "failed", "--json", env=env).stdout) == []  # cancelled is not a dead letter
    again = run_cli("trigger", "diag.echo", "--job-id", "to-cancel", "--in", "1h", env=env)
    assert again.returncode == 0 and "enqueued diag.echo" in again.stdout  # the id is free again

    await enqueue(redis_client, pool, ECHO, {}, job_id="busy", defer_by=timedelta(hours=1))
    await redis_client.set(in_progress_key("busy"), b"1", ex=60)
    running = run_cli("jobs", "cancel", "busy", "--json", env=env)
    assert running.returncode == 1 and json.loads(running.stdout)["outcome"] == "running"
    assert await redis_client.exists(job_key("busy")) == 1

    await redis_client.set(job_key("web"), json.dumps({"f": "diag.echo", "k": {"mark": "w"}}), px=3_600_000)
    await redis_client.zadd(queue_key(INTERACTIVE), {"web": 1})
    assert run_cli("jobs", "cancel", "web", env=env).returncode == 0  # written by another program: recorded too
    web = await ledger.latest_run(pool, "web")
    assert web is not None and (web.state, web.job_name, web.args) == ("cancelled", "diag.echo", {"mark": "w"})


async def test_purge_dead_letters(pool: asyncpg.Pool, redis_client: aioredis.Redis, env: dict[str, str]) -> None:
    for job_id in ("dead-1", "dead-2", "retried"):
        run = await enqueue(redis_client, pool, ECHO, {}, job_id=job_id, defer_by=timedelta(hours=1))
        assert run.run_id is not None
        await ledger.finish_run(pool, run.run_id, state="dead", duration_ms=1, error_class="X", error="boom")
        await redis_client.delete(job_key(job_id))
    await enqueue(redis_client, pool, ECHO, {}, job_id="retried", defer_by=timedelta(hours=1))  # revived since

    assert_one_line_error(run_cli("jobs", "purge", env=env), "say which dead letters to purge")
    dry = json.loads(run_cli("jobs", "purge", "--all", "--json", env=env).stdout)
    assert dry == {"purged": ["dead-1", "dead-2"], "redis_entries": 0, "not_dead_letters": [], "deleted": False}
    assert await pool.fetchval("SELECT count(*) FROM runtime.job_runs") == 4  # a dry run deletes nothing

    one = run_cli("jobs", "purge", "dead-1", "--yes", env=env)
    assert one.returncode == 0 and "purged: 1 dead letter(s)" in one.stdout, one.stderr
    assert await ledger.latest_run(pool, "dead-1") is None
    refused = run_cli("jobs", "purge", "retried", "dead-2", "--yes", env=env)
    assert_one_line_error(refused, "not dead letters (unknown, retried since, or never dead): retried")
    assert await ledger.latest_run(pool, "dead-2") is None  # the one that was a dead letter went
    assert [r.state for r in await ledger.runs_of(pool, "retried")] == ["queued", "dead"]  # untouched
