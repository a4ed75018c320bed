"""Hostile input on every command that takes some: one `error:` line and exit 2, never a traceback.

Exit codes, the one convention (README "Exit codes"): 0 ok; 1 the thing checked is not healthy (doctor, health) or the
job followed with --wait ended dead; 2 bad input or configuration, an unknown job id included; 3 --wait gave up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from jobs.runtime.keys import INTERACTIVE, job_key, queue_key
from tests.cli.runner import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trigger", "ingest", "--args-json", '{"conversation_id": "a\\u0000b"}'], "conversation_id: contains a NUL"),
        (["trigger", "diag.echo", "--arg", 'mark="x\\u0000y"'], "mark: contains a NUL"),
        (["trigger", "sweep_timeouts", "--in", "inf"], "--in 'inf': expected a duration of zero or more"),
        (["trigger", "sweep_timeouts", "--in", "-5"], "--in '-5': expected a duration of zero or more"),
        (["trigger", "sweep_timeouts", "--in", "1e12"], "--in '1e12': at most 366 days ahead"),
        (["trigger", "sweep_timeouts", "--in", "999999999999d"], "at most 366 days ahead"),
        (["trigger", "sweep_timeouts", "--at", "9999-12-31T23:59:59-23:59"], "must lie within 366 days of now"),
        (["trigger", "sweep_timeouts", "--at", "0001-01-01T00:00:00+14:00"], "must lie within 366 days of now"),
        (["trigger", "sweep_timeouts", "--job-id", "x" * 201], "--job-id: at most 200 characters (got 201)"),
        (["trigger", "sweep_timeouts", "--job-id", "a\tb"], "control characters are not allowed"),
        (["trigger", "sweep_timeouts", "--job-id", " "], "--job-id: must not be empty"),
        (["trigger", "sweep_timeouts", "--wait", "--timeout", "nan"], "--timeout nan: expected a number of seconds"),
        (["trigger", "sweep_timeouts", "--queue", "fast"], "unknown queue 'fast'"),
        (["trigger", "no-such-job"], "unknown job 'no-such-job'"),
        (["jobs", "show", "a\x01b"], "JOB_ID 'a\\x01b': control characters are not allowed"),
        (["jobs", "retry", "y" * 300], "JOB_ID: at most 200 characters"),
        (["jobs", "failed", "--job", "ingest\n"], "--job 'ingest\\n': control characters"),
        (["seed-sample", "--user-email", "a@b@c"], "expected one e-mail address"),
        (["seed-sample", "--user-email", "m" * 300 + "@example.org"], "expected one e-mail address"),
        (["seed-sample", "--user-email", "maya @example.org"], "expected one e-mail address"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], expected: str, tmp_path: Path) -> None:
    # unreachable URLs: a command that got past validation would fail on them instead, with another message
    env = {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert_one_line_error(run_cli(*args, "--dry-run" if args[0] == "trigger" else "--json", env=env), expected)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("{not json", "invalid configuration: ORRERY_CRON: Value error, not valid JSON"),
        ('{"sweep_timeouts": "61 * * * *"}', "ORRERY_CRON: Value error, 'sweep_timeouts': minute field '61'"),
        ('{"sweep_timeouts": 5}', "ORRERY_CRON['sweep_timeouts']: Input should be a valid string"),
        ('{"nope": "off"}', "invalid configuration: ORRERY_CRON: unknown job 'nope'; known jobs: apply_corrections, "),
    ],
)
@pytest.mark.parametrize("command", [["jobs", "list"], ["doctor"]])
def test_a_bad_orrery_cron_stops_jobs_list_and_doctor_alike(
    command: list[str], cron: str, expected: str, tmp_path: Path
) -> None:
    env = {"ORRERY_CRON": cron, "DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert_one_line_error(run_cli(*command, env=env), expected)


def test_orrery_cron_is_what_jobs_list_shows() -> None:
    env = {"ORRERY_CRON": '{"sweep_timeouts": "*/2 * * * *", "prune_ledger": "off", "diag.echo": "0 3 * * *"}'}
    listed = run_cli("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    schedule = {row["name"]: row["schedule"] for row in json.loads(listed.stdout)}
    assert schedule["sweep_timeouts"] == "*/2 * * * *" and schedule["diag.echo"] == "0 3 * * *"
    assert schedule["prune_ledger"] is None and schedule["expire_sessions"] is not None


def test_unknown_job_ids_are_input_errors_for_show_and_retry(database_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    assert_one_line_error(run_cli("jobs", "show", "ingest:nobody", env=env), "no job with id 'ingest:nobody'")
    assert_one_line_error(run_cli("jobs", "retry", "ingest:nobody", env=env), "no job with id 'ingest:nobody'")


async def test_show_a_job_another_program_wrote_into_redis(
    database_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    """What the web app's producer writes (docs/jobs.md), before any worker has seen it: queued, with the record's
    own enqueue time and the queue score as its run time, not "does not exist"."""
    enqueued, runs_at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC), datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    record: dict[str, Any] = {
        "t": None,
        "f": "ingest",
        "a": [],
        "k": {"conversation_id": "c_web"},
        "et": enqueued.timestamp() * 1000,
    }
    await redis_client.set(job_key("ingest:c_web"), json.dumps(record), px=3_600_000)
    await redis_client.zadd(queue_key(INTERACTIVE), {"ingest:c_web": runs_at.timestamp() * 1000})
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    shown = run_cli("jobs", "show", "ingest:c_web", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "job_id": "ingest:c_web",
        "in_redis": True,
        "runs": [],
        "llm_calls": [],
        "redis": {
            "state": "queued",
            "name": "ingest",
            "queue": INTERACTIVE,
            "args": {"conversation_id": "c_web"},
            "enqueued_at": "2026-03-01T08:00:00Z",
            "run_at": "2026-03-01T09:30:00Z",
            "problem": None,
        },
    }
    text = run_cli("jobs", "show", "ingest:c_web", env=env)
    assert text.returncode == 0, text.stderr
    assert "queued on interactive, enqueued 2026-03-01T08:00:00Z, runs at 2026-03-01T09:30:00Z" in text.stdout
    assert "no worker has started it" in text.stdout

    await redis_client.set(job_key("orphan"), '{"f": "ingest", "k": [], "et": "yesterday"}', px=3_600_000)
    orphan = json.loads(run_cli("jobs", "show", "orphan", "--json", env=env).stdout)["redis"]
    assert orphan["state"] == "orphaned" and orphan["queue"] is None and orphan["run_at"] == "-"
    assert '"k" (the arguments) must be a JSON object' in orphan["problem"]
