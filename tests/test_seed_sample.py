"""seed-sample: the sample user lands once, with deterministic ids, through the function and through the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from store.context import read_turn_context
from store.repos import conversations, media_items, users
from store.samples.loader import SAMPLES_DIR, SampleError, load_sample, sample_id, seed_sample_user
from tests.cli.runner import run_cli

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)


async def table_counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM conversations), "
        "(SELECT count(*) FROM conversation_messages)"
    )
    assert row is not None
    return row[0], row[1], row[2]


def expected_counts() -> tuple[int, int, int]:
    """(users, conversations, messages) of one loaded sample."""
    sample = load_sample()
    return 1, len(sample.conversations), sum(len(c.messages) for c in sample.conversations)


async def test_seeding_twice_changes_nothing(pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path) -> None:
    sample = load_sample()
    first = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW)
    assert first.user_created and first.created_keys == [c.key for c in sample.conversations]
    assert first.user_id == sample_id(sample.user.email)
    assert [(c.key, c.status, c.message_count) for c in first.conversations] == [
        (c.key, c.status, len(c.messages)) for c in sample.conversations
    ]
    counts = await table_counts(pool)
    assert counts == expected_counts()
    stored_before = await conversations.list_conversations(pool, first.user_id)

    await conversations.set_conversation_status(
        pool, first.user_id, first.conversations[0].conversation_id, "processed"
    )
    second = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW + timedelta(days=3))
    assert second.already_present and not second.user_created and second.created_keys == []
    assert [c.conversation_id for c in second.conversations] == [c.conversation_id for c in first.conversations]
    assert second.conversations[0].status == "processed", "a re-run reports, and keeps, what ingestion did since"
    assert await table_counts(pool) == counts
    stored_after = await conversations.list_conversations(pool, first.user_id)
    assert [c.start_time for c in stored_after] == [c.start_time for c in stored_before]


async def test_two_seeders_at_once_load_it_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    first, second = await asyncio.gather(
        *(seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW) for _ in range(2))
    )
    assert sorted([first.user_created, second.user_created]) == [False, True]
    assert first.conversations == second.conversations
    assert await table_counts(pool) == expected_counts()


async def test_seeded_rows_match_the_file(pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path) -> None:
    sample = load_sample()
    seeded = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW)
    user = await users.get_user(pool, seeded.user_id)
    assert user is not None
    assert (user.email, user.name, user.timezone, user.memory_profile) == (
        sample.user.email,
        sample.user.name,
        sample.user.timezone,
        sample.user.memory_profile,
    )
    for spec, row in zip(sample.conversations, seeded.conversations, strict=True):
        stored = await conversations.get_conversation(pool, seeded.user_id, row.conversation_id)
        assert stored is not None
        assert stored.start_time < NOW and NOW - stored.start_time >= timedelta(days=spec.days_ago)
        assert (stored.ended_at is None) == (spec.status == "active")
        messages = await conversations.list_messages(pool, seeded.user_id, row.conversation_id)
        assert [(m.role, m.content) for m in messages] == spec.messages
        assert [m.id for m in messages] == [
            sample_id(sample.user.email, spec.key, str(i)) for i in range(len(messages))
        ]
        assert all(m.timestamp < NOW for m in messages)
        context = await read_turn_context(redis_client, row.conversation_id)
        if spec.turn_context is None:
            assert context is None
        else:
            assert context is not None and context.model_dump() == spec.turn_context


def same_bytes(one: Path, other: Path) -> bool:
    return one.read_bytes() == other.read_bytes()


async def test_attachments_are_uploaded_pending_and_cited_by_their_message(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """Each sample attachment is copied into the media root under the user's id and recorded `pending` with a
    file:// URL there, its id in its message's media_ids; a rerun uploads and inserts nothing new."""
    sample = load_sample()
    seeded = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW)
    wanted = [(c.key, a) for c in sample.conversations for a in c.attachments]
    assert wanted, "the sample shows an attachment"
    for key, attachment in wanted:
        conversation_id = sample_id(sample.user.email, key)
        messages = await conversations.list_messages(pool, seeded.user_id, conversation_id)
        cited = await media_items.list_media_items(pool, seeded.user_id, messages[attachment.message].media_ids)
        [item] = [one for one in cited if one.filename == Path(attachment.file).name]
        assert (item.type, item.processing_status, item.filename) == (
            attachment.type.value,
            "pending",
            Path(attachment.file).name,
        )
        path = Path(urlsplit(item.storage_url).path)
        assert path.is_relative_to(tmp_path / seeded.user_id) and same_bytes(path, SAMPLES_DIR / attachment.file)
    again = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW)
    assert again.already_present
    assert len(await media_items.list_media_items(pool, seeded.user_id)) == len(wanted)


async def test_another_email_is_another_user(pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path) -> None:
    maya = await seed_sample_user(pool, redis_client, media_dir=tmp_path, now=NOW)
    other = await seed_sample_user(pool, redis_client, email="demo@example.org", media_dir=tmp_path, now=NOW)
    assert other.user_created and other.user_id != maya.user_id
    assert not {c.conversation_id for c in other.conversations} & {c.conversation_id for c in maya.conversations}


async def test_an_email_owned_by_someone_else_is_refused(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    await users.create_user(pool, "web-app-user", email="taken@example.org")
    with pytest.raises(SampleError, match="already belongs to a user that seed-sample did not create"):
        await seed_sample_user(pool, redis_client, email="taken@example.org", media_dir=tmp_path, now=NOW)
    assert await table_counts(pool) == (1, 0, 0)


def run_seed_sample(*args: str, database_url: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path)}
    return run_cli("seed-sample", *args, env=env)


async def test_cli_twice_same_ids_then_already_present(
    database_url: str, redis_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = run_seed_sample("--json", database_url=database_url, redis_url=redis_url, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    first_out = json.loads(first.stdout)
    assert not first_out["already_present"] and all(c["created"] for c in first_out["conversations"])

    again = run_seed_sample("--json", database_url=database_url, redis_url=redis_url, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    again_out = json.loads(again.stdout)
    assert again_out["already_present"]
    assert [c["conversation_id"] for c in again_out["conversations"]] == [
        c["conversation_id"] for c in first_out["conversations"]
    ]
    assert await table_counts(pool) == expected_counts()

    table = run_seed_sample(database_url=database_url, redis_url=redis_url, tmp_path=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "already present: nothing changed" in table.stdout
    assert "half-marathon" in table.stdout and "Traceback" not in table.stderr


async def test_cli_on_an_unmigrated_database_says_what_to_do(
    empty_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    result = run_seed_sample(database_url=empty_database_url, redis_url=redis_url, tmp_path=tmp_path)
    assert result.returncode == 2
    assert "the database is not migrated: run `" in result.stderr and "Traceback" not in result.stderr
    assert "run.py migrate`" in result.stderr


async def test_cli_rejects_a_malformed_email(database_url: str, redis_url: str, tmp_path: Path) -> None:
    result = run_seed_sample(
        "--user-email", "nobody", database_url=database_url, redis_url=redis_url, tmp_path=tmp_path
    )
    assert result.returncode == 2 and "expected one e-mail address" in result.stderr
