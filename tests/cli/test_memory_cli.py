"""`run.py memory history USER [ENTITY]`: an operator reads how a user's memory was revised (issue 19, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from core.revisions import RevisionKind
from store.ingestion_writes import memory_unit_id, write_ingestion
from store.repos import conversations, users
from tests.cli.runner import assert_one_line_error, run_cli
from tests.jobs.conftest import cli_env
from tests.store.test_ingestion_writes import THRESHOLDS, WHEN, result_for
from tests.store.test_revisions import later


async def test_history_shows_each_revision_with_what_it_replaced_and_why(
    database_url: str, redis_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    user = await users.create_user(pool, "user-maya", email="maya@example.com", name="Maya")
    first = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=WHEN)
    second = await conversations.create_conversation(pool, user.user_id, status="ended", start_time=WHEN)
    await write_ingestion(pool, result_for(user.user_id, first.id), THRESHOLDS)
    earlier = memory_unit_id(first.id, "m2")
    changed = later(user.user_id, second.id, earlier, RevisionKind.UPDATED, content="The knee is fine again.")
    await write_ingestion(pool, changed, THRESHOLDS)
    env = cli_env(database_url, redis_url, tmp_path)

    shown = run_cli("memory", "history", user.user_id, earlier, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    [revision] = json.loads(shown.stdout)
    assert (revision["kind"], revision["entity_id"], revision["source_conversation_id"]) == (
        "updated",
        earlier,
        second.id,
    )
    assert revision["before"]["content"] == "Left knee hurt after the run."
    assert revision["after"]["content"] == "The knee is fine again."

    table = run_cli("memory", "history", user.user_id, env={**env, "COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert earlier in table.stdout and f"conversation {second.id}" in table.stdout
    assert "Left knee hurt after the run." in table.stdout

    none = run_cli("memory", "history", user.user_id, "no-such-entity", env=env)
    assert none.returncode == 0 and "no revision of entity no-such-entity" in none.stdout + none.stderr
    assert_one_line_error(run_cli("memory", "history", "nobody", env=env), "no user 'nobody'")
    assert_one_line_error(run_cli("memory", "history", " ", env=env), "expected an id")
