"""Messages the web app writes the way Prisma does come back in the order they were written.

Prisma evaluates `@default(now())` once per query, so `conversation.create({ data: { messages: { create: [...] } } })`
stores every message with one identical `timestamp`, in one multi-row INSERT (older Prisma: one INSERT per row, same
timestamp). Ids are client-side uuid4s, random, so ordering ties by id scrambled the prompt; `seq` (BIGSERIAL) keeps
the written order. The ids below sort in reverse, so ordering by id would put the last message first.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from store.repos import conversations, users

LINES = [
    ("assistant", "Morning! How did the race go?"),
    ("user", "I finished the 10k."),
    ("assistant", "Congratulations! How do you feel?"),
    ("user", "Tired but proud."),
    ("assistant", "What was the hardest part?"),
    ("user", "The hill at kilometre seven."),
]


def descending_ids() -> list[str]:
    return [str(uuid.UUID(int=(0xF - i) << 124 | uuid.uuid4().int >> 4)) for i in range(len(LINES))]


async def conversation_with_one_statement_of_messages(pool: asyncpg.Pool, *, one_insert: bool) -> tuple[str, str]:
    user = await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex[:8]}@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=123000)
    ids = descending_ids()
    rows: list[tuple[object, ...]] = [
        (ids[i], conversation.id, role, content, now, []) for i, (role, content) in enumerate(LINES)
    ]
    columns = '"id","conversation_id","role","content","timestamp","media_ids"'
    insert = f'INSERT INTO "public"."conversation_messages" ({columns})'
    async with pool.acquire() as conn, conn.transaction():
        if one_insert:  # Prisma's nested create: one statement, one VALUES row per message, in array order
            placeholders = ",".join(
                f"(${6 * i + 1},${6 * i + 2},${6 * i + 3},${6 * i + 4},${6 * i + 5},${6 * i + 6})"
                for i in range(len(rows))
            )
            await conn.execute(f"{insert} VALUES {placeholders}", *[value for row in rows for value in row])
        else:
            for row in rows:
                await conn.execute(f"{insert} VALUES ($1,$2,$3,$4,$5,$6)", *row)
    return user.user_id, conversation.id


async def test_a_nested_create_keeps_its_order_for_the_job_and_the_repository(pool: asyncpg.Pool) -> None:
    for one_insert in (True, False):
        user_id, conversation_id = await conversation_with_one_statement_of_messages(pool, one_insert=one_insert)
        for_job = await conversations.read_conversation_for_job(pool, conversation_id, concept_limit=5)
        assert for_job is not None
        assert [(m.role, m.content) for m in for_job.messages] == LINES
        listed = await conversations.list_messages(pool, user_id, conversation_id)
        assert [(m.role, m.content) for m in listed] == LINES
        assert len({m.timestamp for m in listed}) == 1  # one timestamp, as Prisma writes it


async def test_timestamps_still_come_first(pool: asyncpg.Pool) -> None:
    """`seq` only breaks ties: a message with an earlier timestamp written later still reads first."""
    user = await users.create_user(pool, str(uuid.uuid4()), email="order@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    for content, second in (("second", 5), ("first", 1)):
        at = datetime(2026, 1, 1, 10, 0, second, tzinfo=UTC)
        await conversations.add_message(pool, user.user_id, conversation.id, role="user", content=content, timestamp=at)
    listed = await conversations.list_messages(pool, user.user_id, conversation.id)
    assert [m.content for m in listed] == ["first", "second"]
