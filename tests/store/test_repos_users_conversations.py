"""Round trips for users, conversations and messages: exact values, UTC timestamps, @updatedAt advancing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from store.repos import conversations, users
from store.repos._base import NotFoundError
from tests.store import testrows

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


async def test_user_round_trip_and_orrery_updates_leave_last_active_at(pool: asyncpg.Pool) -> None:
    created = await users.create_user(
        pool,
        "u-1",
        email="ana@example.org",
        name="Ana",
        timezone="Europe/Lisbon",
        memory_profile={"summary": "runner"},
        preferences={"theme": "dark"},
    )
    assert (created.user_id, created.email, created.name, created.timezone) == (
        "u-1",
        "ana@example.org",
        "Ana",
        "Europe/Lisbon",
    )
    assert created.memory_profile == {"summary": "runner"} and created.preferences == {"theme": "dark"}
    assert created.created_at.tzinfo is UTC and created.last_active_at == created.created_at
    assert abs(datetime.now(UTC) - created.created_at) < timedelta(seconds=5)
    assert await users.get_user(pool, "u-1") == created

    await asyncio.sleep(0.01)
    await users.record_insight(
        pool,
        "u-1",
        memory_profile={"summary": "marathoner"},
        knowledge_graph_schema={},
        next_context={"focus": "sleep"},
    )
    await users.record_insight(
        pool, "u-1", memory_profile={"summary": "marathoner"}, knowledge_graph_schema={}, next_context=None
    )
    await users.record_ingestion(pool, "u-1", concepts_created=3, next_context=None)  # the package stays
    await users.record_ingestion(pool, "u-1", concepts_created=2, next_context={"focus": "sleep"})
    after = await users.get_user(pool, "u-1")
    assert after is not None and created.last_active_at is not None and after.last_active_at is not None
    assert after.next_conversation_context_package == {"focus": "sleep"}
    assert after.memory_profile == {"summary": "marathoner"}
    assert after.concepts_created_in_cycle == 5
    assert after.last_active_at == created.last_active_at  # background writes are not the user's activity

    cycle_start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    await users.start_cycle(pool, "u-1", cycle_start)
    cycled = await users.get_user(pool, "u-1")
    assert cycled is not None
    assert cycled.last_cycle_started_at == datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    assert cycled.concepts_created_in_cycle == 0


async def test_user_updates_on_a_missing_user_raise_and_naive_datetimes_are_refused(pool: asyncpg.Pool) -> None:
    assert await users.get_user(pool, "nobody") is None
    with pytest.raises(NotFoundError):
        await users.record_insight(pool, "nobody", memory_profile={}, knowledge_graph_schema=None, next_context=None)
    await users.create_user(pool, "u-1", email="a@example.org")
    with pytest.raises(ValueError, match="naive datetime"):
        await users.start_cycle(pool, "u-1", datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="must be a JSON object"):
        not_an_object: Any = ["not", "an", "object"]
        await users.record_insight(
            pool, "u-1", memory_profile=not_an_object, knowledge_graph_schema=None, next_context=None
        )


async def test_conversation_and_messages_round_trip(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    conv = await conversations.create_conversation(
        pool, "u-1", conversation_id="c-1", title="Run", start_time=MOMENT, metadata={"channel": "web"}
    )
    assert (conv.id, conv.user_id, conv.title, conv.status, conv.metadata) == (
        "c-1",
        "u-1",
        "Run",
        "active",
        {"channel": "web"},
    )
    assert conv.start_time == MOMENT and conv.ended_at is None
    assert await conversations.get_conversation(pool, "u-1", "c-1") == conv

    second = await conversations.add_message(pool, "u-1", "c-1", role="assistant", content="b", timestamp=MOMENT)
    first = await conversations.add_message(
        pool, "u-1", "c-1", role="user", content="a", timestamp=MOMENT, message_id="0-first"
    )
    later = await conversations.add_message(
        pool, "u-1", "c-1", role="user", content="c", timestamp=MOMENT + timedelta(minutes=1)
    )
    assert first.media_ids == [] and first.timestamp == MOMENT and first.conversation_id == "c-1"
    # a timestamp tie keeps the order the rows were written in (seq), whatever their ids ("0-first" sorts first)
    assert await conversations.list_messages(pool, "u-1", "c-1") == [second, first, later]

    await conversations.create_conversation(
        pool, "u-1", conversation_id="c-2", status="ended", start_time=MOMENT + timedelta(days=1)
    )
    assert [c.id for c in await conversations.list_conversations(pool, "u-1")] == ["c-1", "c-2"]
    assert [c.id for c in await conversations.list_conversations(pool, "u-1", status="ended")] == ["c-2"]
    assert await conversations.read_conversation_for_job(pool, "missing", concept_limit=5) is None


async def test_a_job_reads_a_conversation_with_its_owners_profile_and_most_relevant_concepts(
    pool: asyncpg.Pool,
) -> None:
    await users.create_user(pool, "u-1", email="a@example.org", memory_profile={"summary": "runner"})
    await conversations.create_conversation(pool, "u-1", conversation_id="c-1", start_time=MOMENT)
    late = await conversations.add_message(
        pool, "u-1", "c-1", role="user", content="b", timestamp=MOMENT + timedelta(minutes=1)
    )
    early = await conversations.add_message(pool, "u-1", "c-1", role="assistant", content="a", timestamp=MOMENT)
    for index, salience in enumerate([0.2, 0.9, None, 0.5, 1.0]):
        made = await testrows.create_concept(
            pool, "u-1", name=f"c{index}", type="topic", description=None, normalized_name=f"c{index}"
        )
        await pool.execute(
            "UPDATE concepts SET salience = $2::float8, "
            "status = CASE WHEN $2::float8 = 1.0 THEN 'archived' ELSE status END WHERE concept_id = $1",
            made.concept_id,
            salience,
        )

    read = await conversations.read_conversation_for_job(pool, "c-1", concept_limit=3)

    assert read is not None
    assert read.conversation == await conversations.get_conversation(pool, "u-1", "c-1")
    assert read.messages == [early, late]
    assert read.memory_profile == {"summary": "runner"}
    assert [c.name for c in read.concepts] == ["c1", "c3", "c0"]  # active only, most salient first
    assert all(c.user_id == "u-1" and c.status == "active" for c in read.concepts)


async def test_locking_for_ingestion_returns_the_owners_current_package(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(pool, "u-1", conversation_id="c-1")
    await users.record_ingestion(pool, "u-1", concepts_created=0, next_context={"focus": "sleep"})
    async with pool.acquire() as conn, conn.transaction():
        locked = await conversations.lock_for_ingestion(conn, "u-1", "c-1")
        assert locked is not None and locked.conversation.id == "c-1"
        assert locked.owner_next_context == {"focus": "sleep"}
        assert await conversations.lock_for_ingestion(conn, "u-1", "missing") is None


async def test_status_transitions_are_conditional(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(pool, "u-1", conversation_id="c-1")
    assert await conversations.set_conversation_status(pool, "u-1", "c-1", "ended")
    ended = await conversations.get_conversation(pool, "u-1", "c-1")
    assert ended is not None and ended.status == "ended" and ended.ended_at is not None
    claimed = await conversations.set_conversation_status(pool, "u-1", "c-1", "processing", only_from=["ended"])
    again = await conversations.set_conversation_status(pool, "u-1", "c-1", "processing", only_from=["ended"])
    assert (claimed, again) == (True, False)
    with pytest.raises(ValueError, match="unknown conversation status"):
        await conversations.set_conversation_status(pool, "u-1", "c-1", "done")


async def test_processed_keeps_an_existing_title_and_fills_a_missing_one(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(pool, "u-1", conversation_id="titled", title="Mine")
    await conversations.create_conversation(pool, "u-1", conversation_id="blank", title="  ")
    for conv_id in ("titled", "blank"):
        await conversations.mark_conversation_processed(
            pool, "u-1", conv_id, title="Agent's", context_summary="summary", importance_score=7.5
        )
    titled = await conversations.get_conversation(pool, "u-1", "titled")
    blank = await conversations.get_conversation(pool, "u-1", "blank")
    assert titled is not None and blank is not None
    assert (titled.title, titled.status, titled.context_summary, titled.importance_score) == (
        "Mine",
        "processed",
        "summary",
        7.5,
    )
    assert blank.title == "Agent's"
    with pytest.raises(NotFoundError):
        await conversations.mark_conversation_processed(
            pool, "u-1", "missing", title=None, context_summary=None, importance_score=None
        )


async def test_failed_merges_into_metadata_even_when_it_is_not_an_object(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(
        pool, "u-1", conversation_id="c-1", metadata={"channel": "web"}, status="ended"
    )
    await conversations.create_conversation(pool, "u-1", conversation_id="c-2", status="ended")
    await pool.execute("""UPDATE conversations SET metadata = '["odd"]' WHERE id = 'c-2'""")

    await conversations.mark_conversation_failed(pool, "u-1", "c-1", "LLM answer invalid twice")
    failed = await conversations.get_conversation(pool, "u-1", "c-1")
    assert failed is not None and failed.status == "failed" and failed.metadata is not None
    assert failed.metadata["channel"] == "web"
    assert failed.metadata["failure"]["reason"] == "LLM answer invalid twice"
    assert datetime.fromisoformat(failed.metadata["failure"]["at"]).tzinfo is not None

    odd = await conversations.get_conversation(pool, "u-1", "c-2")
    assert odd is not None and odd.metadata is None, "a list in a JSON object column reads as None"
    await conversations.mark_conversation_failed(pool, "u-1", "c-2", "boom")
    kept = await conversations.get_conversation(pool, "u-1", "c-2")
    assert kept is not None and kept.metadata is not None
    assert kept.metadata["previous_metadata"] == ["odd"] and kept.metadata["failure"]["reason"] == "boom"


async def test_bad_stored_json_never_crashes_a_read(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    await pool.execute(
        """UPDATE users SET memory_profile = '"just text"', preferences = '42',
           next_conversation_context_package = '[1, 2]' WHERE user_id = 'u-1'"""
    )
    user = await users.get_user(pool, "u-1")
    assert user is not None
    assert (user.memory_profile, user.preferences, user.next_conversation_context_package) == (None, None, None)


async def test_add_message_to_a_missing_conversation_raises(pool: asyncpg.Pool) -> None:
    await users.create_user(pool, "u-1", email="a@example.org")
    with pytest.raises(NotFoundError):
        await conversations.add_message(pool, "u-1", "missing", role="user", content="x")
