"""Every command on a database that is not migrated, or was migrated by an older or a newer Orrery: one line and
exit 2, never a traceback from the first missing relation; a worker refuses to start (issue 21, blocker 1)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.cli.runner import assert_one_line_error, run_cli

COMMANDS = [
    ["jobs", "failed"],
    ["jobs", "runs"],
    ["jobs", "show", "ingest:c1"],
    ["jobs", "retry", "ingest:c1"],
    ["jobs", "cancel", "ingest:c1"],
    ["jobs", "purge", "--all"],
    ["jobs", "queues"],
    ["sync", "status"],
    ["sync", "run"],
    ["reconcile"],
    ["recall", "--user", "u1", "running"],
    ["forget-user", "u1", "--yes"],
    ["trigger", "sweep_timeouts"],
    ["rebuild", "--graph"],
    ["reembed"],
    ["health", "--stores"],
    ["seed-sample"],
    ["worker", "--burst"],
    ["worker", "--burst", "--processes", "2"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_on_an_unmigrated_database_is_one_line(
    command: list[str], empty_database_url: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": empty_database_url, "REDIS_URL": redis_url, "ORRERY_LLM": "scripted"}
    result = run_cli(*command, env=env)
    assert_one_line_error(result, "the database is not migrated: run `")
    assert "run.py migrate`" in result.stderr


async def test_a_database_of_an_older_or_newer_orrery_says_so(database_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_LLM": "scripted"}
    conn = await asyncpg.connect(database_url)
    try:
        newest = await conn.fetchrow("SELECT * FROM runtime.schema_migrations ORDER BY version DESC LIMIT 1")
        assert newest is not None
        await conn.execute("DELETE FROM runtime.schema_migrations WHERE version = $1", newest["version"])
        for command in (["jobs", "queues"], ["worker", "--burst"]):
            older = run_cli(*command, env=env)
            assert_one_line_error(older, f"migrated by an older Orrery: 1 migration(s) pending ({newest['name']})")
        doctor = run_cli("doctor", env=env)
        assert doctor.returncode == 1 and "migrated by an older Orrery" in doctor.stdout, doctor.stdout

        await conn.execute(
            "INSERT INTO runtime.schema_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, 0), "
            "('9999', '9999_from_the_future.sql', 'x', 0)",
            newest["version"],
            newest["name"],
            newest["checksum"],
        )
        for command in (["sync", "status"], ["worker", "--burst"]):
            newer = run_cli(*command, env=env)
            assert_one_line_error(newer, "migrated by a newer Orrery: it has migrations this code does not know")
    finally:
        await conn.close()


def test_a_worker_without_an_llm_refuses_to_start(database_url: str, redis_url: str) -> None:
    """Issue 21, blocker 2: with no OPENAI_* set a worker used to answer real users from the sample fixtures."""
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    for command in (["worker"], ["worker", "--processes", "2"], ["worker", "--queue", "batch", "--burst"]):
        result = run_cli(*command, env=env, timeout=60)
        assert_one_line_error(result, "no LLM is configured: set OPENAI_API_KEY")
        assert "ORRERY_LLM=scripted" in result.stderr and "need it)" in result.stderr
