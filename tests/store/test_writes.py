"""Writes sent together (store/repos/_base.py): one statement for several repositories' independent writes, each
part with its own parameters and its own answer, and all or nothing when one part's answer is an error."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from store.repos import conversations, memory_units, users
from store.repos._base import NotFoundError, Write, apply_together, transaction

MOMENT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> str:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(pool, "u-1", conversation_id="c-1", status="processing")
    return "u-1"


def _units(*keys: str, conversation_id: str = "c-1") -> list[memory_units.NewMemoryUnit]:
    return [
        memory_units.NewMemoryUnit(
            muid=f"mu-{key}",
            title=f"title {key}",
            content=f"content {key}",
            creation_ts=MOMENT,
            importance_score=7.0,
            sentiment_score=0.5,
            source_conversation_id=conversation_id,
        )
        for key in keys
    ]


async def test_parts_keep_their_own_parameters_and_answers(pool: asyncpg.Pool, user: str) -> None:
    """The units' part has ten parameters, so the next parts' $1-$5 must become $11-$15 and so on: a slip in the
    renumbering writes one part's values into another's columns, or fails on a type."""
    counts = await apply_together(
        pool,
        [
            memory_units.inserting(user, _units("a", "b")),
            None,  # nothing to write: answers 0, sends nothing
            users.recording_ingestion(user, concepts_created=3, next_context={"opening": "hi"}),
            conversations.marking_processed(
                user, "c-1", title="A run", context_summary="ran 10k", importance_score=6.5
            ),
        ],
    )
    assert counts == [2, 0, 1, 1]
    stored = await memory_units.list_memory_units(pool, user)
    assert [(u.muid, u.title, u.source_conversation_id) for u in stored] == [
        ("mu-a", "title a", "c-1"),
        ("mu-b", "title b", "c-1"),
    ]
    owner = await users.get_user(pool, user)
    assert owner is not None
    assert (owner.concepts_created_in_cycle, owner.next_conversation_context_package) == (3, {"opening": "hi"})
    conversation = await conversations.get_conversation(pool, user, "c-1")
    assert conversation is not None
    assert (conversation.status, conversation.title, conversation.importance_score) == ("processed", "A run", 6.5)


async def test_one_part_refused_leaves_nothing_of_the_others(pool: asyncpg.Pool, user: str) -> None:
    """A part whose answer is an error (a conversation that is not the user's) raises after the statement ran; in
    the caller's transaction, that takes the other parts' rows with it."""
    with pytest.raises(NotFoundError, match="conversation c-2 not found for user u-1"):
        async with transaction(pool) as conn:
            await apply_together(
                conn,
                [
                    memory_units.inserting(user, _units("a")),
                    users.recording_ingestion(user, concepts_created=3, next_context=None),
                    conversations.marking_processed(
                        user, "c-2", title=None, context_summary=None, importance_score=None
                    ),
                ],
            )
    assert await memory_units.list_memory_units(pool, user) == []
    owner = await users.get_user(pool, user)
    assert owner is not None and owner.concepts_created_in_cycle == 0
    # a part refused by its own check: units of another user's conversation are all or none, together as alone
    await users.create_user(pool, "u-2", email="b@example.org")
    await conversations.create_conversation(pool, "u-2", conversation_id="c-9")
    with pytest.raises(NotFoundError, match="c-9"):
        async with transaction(pool) as conn:
            await apply_together(
                conn,
                [
                    memory_units.inserting(user, [*_units("a"), *_units("x", conversation_id="c-9")]),
                    users.recording_ingestion(user, concepts_created=1, next_context=None),
                ],
            )
    assert await memory_units.list_memory_units(pool, user) == []


async def test_a_single_part_goes_alone_and_none_are_nothing(pool: asyncpg.Pool, user: str) -> None:
    assert await apply_together(pool, [None, None]) == [0, 0]
    assert await apply_together(pool, [None, memory_units.inserting(user, _units("a"))]) == [0, 1]
    assert [u.muid for u in await memory_units.list_memory_units(pool, user)] == ["mu-a"]


def test_a_write_that_returns_rows_is_refused_where_it_is_built() -> None:
    with pytest.raises(ValueError, match="RETURNING"):
        Write("DELETE FROM cards WHERE user_id = $1 RETURNING card_id", ("u-1",))
