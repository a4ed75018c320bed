"""public.conversations and public.conversation_messages; messages are reached only through their conversation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    TextArray,
    UtcDatetime,
    json_object,
    new_id,
    opt_to_db,
    row_count,
    to_db,
    utc_now,
)

CONVERSATION_STATUSES = ("active", "ended", "processing", "processed", "failed")
"""The web app's four statuses plus 'failed', set when ingestion gives up on a conversation."""


class ConversationRecord(Record):
    id: str
    user_id: str
    title: str | None
    start_time: UtcDatetime
    ended_at: UtcDatetime | None
    status: str
    importance_score: float | None
    context_summary: str | None
    metadata: JsonObject
    source_card_id: str | None


class MessageRecord(Record):
    id: str
    conversation_id: str
    role: str
    content: str
    timestamp: UtcDatetime
    llm_call_metadata: JsonObject
    media_ids: TextArray


def _check_status(status: str) -> str:
    if status not in CONVERSATION_STATUSES:
        raise ValueError(f"unknown conversation status {status!r}; expected one of {', '.join(CONVERSATION_STATUSES)}")
    return status


async def create_conversation(
    db: Executor,
    user_id: str,
    *,
    conversation_id: str | None = None,
    title: str | None = None,
    start_time: datetime | None = None,
    ended_at: datetime | None = None,
    status: str = "active",
    metadata: dict[str, Any] | None = None,
) -> ConversationRecord:
    row = await db.fetchrow(
        "INSERT INTO conversations (id, user_id, title, start_time, ended_at, status, metadata) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        conversation_id or new_id(), user_id, title, to_db(start_time or utc_now()), opt_to_db(ended_at),
        _check_status(status), json_object(metadata, "metadata"),
    )  # fmt: skip
    return ConversationRecord.from_row(row)


async def add_message(
    db: Executor,
    user_id: str,
    conversation_id: str,
    *,
    role: str,
    content: str,
    timestamp: datetime | None = None,
    message_id: str | None = None,
) -> MessageRecord:
    """Append a message; NotFoundError when the conversation is not this user's (checked in the same statement)."""
    row = await db.fetchrow(
        "INSERT INTO conversation_messages (id, conversation_id, role, content, timestamp) "
        "SELECT $1, c.id, $4, $5, $6 FROM conversations c WHERE c.id = $3 AND c.user_id = $2 RETURNING *",
        message_id or new_id(), user_id, conversation_id, role, content, to_db(timestamp or utc_now()),
    )  # fmt: skip
    if row is None:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")
    return MessageRecord.from_row(row)


async def get_conversation(
    db: Executor, user_id: str, conversation_id: str, *, for_update: bool = False
) -> ConversationRecord | None:
    """The conversation; `for_update` locks the row until the caller's transaction ends (ingestion's claim)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await db.fetchrow(
        f"SELECT * FROM conversations WHERE id = $2 AND user_id = $1{lock}", user_id, conversation_id
    )
    return ConversationRecord.from_optional(row)


async def list_messages(db: Executor, user_id: str, conversation_id: str) -> list[MessageRecord]:
    """The conversation's messages in order (timestamp, then id for ties); empty when it is not this user's."""
    rows = await db.fetch(
        "SELECT m.* FROM conversation_messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE c.user_id = $1 AND m.conversation_id = $2 ORDER BY m.timestamp, m.id",
        user_id, conversation_id,
    )  # fmt: skip
    return [MessageRecord.from_row(row) for row in rows]


async def list_conversations(db: Executor, user_id: str, *, status: str | None = None) -> list[ConversationRecord]:
    """The user's conversations, oldest first; only those in `status` when given."""
    rows = await db.fetch(
        "SELECT * FROM conversations WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY start_time, id",
        user_id, status,
    )  # fmt: skip
    return [ConversationRecord.from_row(row) for row in rows]


async def set_conversation_status(
    db: Executor, user_id: str, conversation_id: str, status: str, *, only_from: Sequence[str] | None = None
) -> bool:
    """Move the conversation to `status`, only from one of `only_from` when given; False when nothing changed.

    The condition is in the UPDATE itself, so two jobs racing for the same transition cannot both win. Moving to
    'ended' also stamps ended_at when it is still empty.
    """
    result = await db.execute(
        "UPDATE conversations SET status = $3, "
        "ended_at = CASE WHEN $3 = 'ended' AND ended_at IS NULL THEN $5 ELSE ended_at END "
        "WHERE id = $2 AND user_id = $1 AND ($4::text[] IS NULL OR status = ANY($4::text[]))",
        user_id, conversation_id, _check_status(status), None if only_from is None else list(only_from),
        to_db(utc_now()),
    )  # fmt: skip
    return row_count(result) == 1


async def mark_conversation_processed(
    db: Executor, user_id: str, conversation_id: str, *, title: str | None, context_summary: str | None,
    importance_score: float | None,
) -> None:  # fmt: skip
    """Record ingestion's outcome and set status 'processed'.

    The agent's title only fills a conversation that has none (NULL or blank): a title the user or the web app gave
    is kept.
    """
    status = await db.execute(
        "UPDATE conversations SET status = 'processed', title = COALESCE(NULLIF(btrim(title), ''), $3), "
        "context_summary = $4, importance_score = $5 WHERE id = $2 AND user_id = $1",
        user_id, conversation_id, title, context_summary, importance_score,
    )  # fmt: skip
    if row_count(status) == 0:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")


async def mark_conversation_failed(db: Executor, user_id: str, conversation_id: str, reason: str) -> None:
    """Set status 'failed' and merge metadata.failure = {"reason", "at"} into the existing metadata.

    Metadata that is not an object (written by another program) is kept under "previous_metadata", not dropped.
    """
    status = await db.execute(
        "UPDATE conversations SET status = 'failed', metadata = "
        "CASE WHEN metadata IS NULL OR metadata = 'null'::jsonb THEN '{}'::jsonb "
        "WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
        "ELSE jsonb_build_object('previous_metadata', metadata) END "
        "|| jsonb_build_object('failure', jsonb_build_object('reason', $3::text, 'at', $4::text)) "
        "WHERE id = $2 AND user_id = $1",
        user_id, conversation_id, reason, utc_now().isoformat(),
    )  # fmt: skip
    if row_count(status) == 0:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")


async def find_conversation_owner(db: Executor, conversation_id: str) -> str | None:
    """Whose conversation this is: the one function without a user id, by design.

    A job is enqueued with a bare conversation id; this resolves the owner once, and everything after it is scoped
    to that user. It reveals only the owner's id, never any content.
    """
    owner: str | None = await db.fetchval("SELECT user_id FROM conversations WHERE id = $1", conversation_id)
    return owner
