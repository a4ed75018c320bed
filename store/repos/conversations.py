"""public.conversations and public.conversation_messages; messages are reached only through their conversation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import Field

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    TextArray,
    UtcDatetime,
    Write,
    apply,
    json_object,
    new_id,
    opt_to_db,
    row_count,
    to_db,
    utc_now,
)
from store.repos.concepts import RELEVANCE_ORDER, ConceptRecord
from store.repos.memory_units import MemoryUnitRecord

CONVERSATION_STATUSES = ("active", "ended", "processing", "processed", "failed")
"""The web app's four statuses plus 'failed', set when ingestion gives up on a conversation. Orrery moves `ended`
to `processing` when an ingestion starts its LLM work, then to `processed` in the write's transaction or to `failed`
when the job is dead (jobs/ingestion.py); a re-triggered `failed` one stays `failed` until it is written."""


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
        conversation_id or new_id(),
        user_id,
        title,
        to_db(start_time or utc_now()),
        opt_to_db(ended_at),
        _check_status(status),
        json_object(metadata, "metadata"),
    )
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
    media_ids: Sequence[str] = (),
) -> MessageRecord:
    """Append a message (with the ids of its attachments, `media_items.media_id`); NotFoundError when the
    conversation is not this user's (checked in the same statement)."""
    row = await db.fetchrow(
        "INSERT INTO conversation_messages (id, conversation_id, role, content, timestamp, media_ids) "
        "SELECT $1, c.id, $4, $5, $6, $7 FROM conversations c WHERE c.id = $3 AND c.user_id = $2 RETURNING *",
        message_id or new_id(),
        user_id,
        conversation_id,
        role,
        content,
        to_db(timestamp or utc_now()),
        list(media_ids),
    )
    if row is None:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")
    return MessageRecord.from_row(row)


async def get_conversation(db: Executor, user_id: str, conversation_id: str) -> ConversationRecord | None:
    row = await db.fetchrow("SELECT * FROM conversations WHERE id = $2 AND user_id = $1", user_id, conversation_id)
    return ConversationRecord.from_optional(row)


class LockedConversation(Record):
    """A conversation locked for ingestion, with its owner's next-conversation package as it stands now."""

    conversation: ConversationRecord
    owner_next_context: JsonObject


async def lock_for_ingestion(db: Executor, user_id: str, conversation_id: str) -> LockedConversation | None:
    """Lock the conversation's row and its owner's row until the caller's transaction ends, in one statement.

    Why the owner's row too: ingestions of one user's conversations then take turns, so the next-conversation
    package's compare-and-set (the newest conversation's outlook wins) cannot interleave; and the package returned
    is the latest committed one, because Postgres re-reads a row that changed while the lock waited.
    """
    row = await db.fetchrow(
        "SELECT c.*, u.next_conversation_context_package AS owner_next_context "
        "FROM conversations c JOIN users u ON u.user_id = c.user_id WHERE c.id = $2 AND c.user_id = $1 "
        "FOR UPDATE OF c FOR NO KEY UPDATE OF u",
        user_id,
        conversation_id,
    )
    if row is None:
        return None
    return LockedConversation(
        conversation=ConversationRecord.from_row(row), owner_next_context=row["owner_next_context"]
    )


async def list_messages(db: Executor, user_id: str, conversation_id: str) -> list[MessageRecord]:
    """The conversation's messages in order (timestamp, then insertion order: `seq`); empty when not this user's."""
    rows = await db.fetch(
        "SELECT m.* FROM conversation_messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE c.user_id = $1 AND m.conversation_id = $2 ORDER BY m.timestamp, m.seq",
        user_id,
        conversation_id,
    )
    return [MessageRecord.from_row(row) for row in rows]


async def list_conversations(db: Executor, user_id: str, *, status: str | None = None) -> list[ConversationRecord]:
    """The user's conversations, oldest first; only those in `status` when given."""
    rows = await db.fetch(
        "SELECT * FROM conversations WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY start_time, id",
        user_id,
        status,
    )
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
        user_id,
        conversation_id,
        _check_status(status),
        None if only_from is None else list(only_from),
        to_db(utc_now()),
    )
    return row_count(result) == 1


async def mark_conversation_processed(
    db: Executor,
    user_id: str,
    conversation_id: str,
    *,
    title: str | None,
    context_summary: str | None,
    importance_score: float | None,
) -> None:
    """Record ingestion's outcome and set status 'processed'.

    The agent's title only fills a conversation that has none (NULL or blank): a title the user or the web app gave
    is kept. A failure recorded by an earlier try (metadata.failure, metadata.reprocess_failure) is removed: it no
    longer describes the conversation.
    """
    await apply(
        db,
        marking_processed(
            user_id, conversation_id, title=title, context_summary=context_summary, importance_score=importance_score
        ),
    )


def marking_processed(
    user_id: str,
    conversation_id: str,
    *,
    title: str | None,
    context_summary: str | None,
    importance_score: float | None,
) -> Write:
    """`mark_conversation_processed` as a Write, to send with others."""

    def found(count: int) -> int:
        if count == 0:
            raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")
        return count

    return Write(
        "UPDATE conversations SET status = 'processed', title = COALESCE(NULLIF(btrim(title), ''), $3), "
        "context_summary = $4, importance_score = $5, "
        "metadata = CASE WHEN jsonb_typeof(metadata) = 'object' "
        "THEN metadata - 'failure' - 'reprocess_failure' ELSE metadata END "
        "WHERE id = $2 AND user_id = $1",
        (user_id, conversation_id, title, context_summary, importance_score),
        found,
    )


async def mark_conversation_failed(db: Executor, user_id: str, conversation_id: str, reason: str) -> str:
    """Record that ingestion gave up on the conversation, as {"reason", "at"} in its metadata; returns its status.

    `ended`, `processing` and `failed` become `failed` (metadata.failure), so the timeout sweep stops re-enqueueing
    it. A `processed` conversation stays `processed` (metadata.reprocess_failure): a failed reprocess rolled back,
    and its memory is still there and still right. Any other status (`active`: still being written) is left alone.
    Metadata that is not an object (written by another program) is kept under "previous_metadata", not dropped.
    """
    status = await db.fetchval(
        "UPDATE conversations SET "
        "status = CASE WHEN status IN ('ended', 'processing', 'failed') THEN 'failed' ELSE status END, "
        "metadata = CASE WHEN status NOT IN ('ended', 'processing', 'failed', 'processed') THEN metadata ELSE "
        "(CASE WHEN metadata IS NULL OR metadata = 'null'::jsonb THEN '{}'::jsonb "
        "WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
        "ELSE jsonb_build_object('previous_metadata', metadata) END) "
        "|| jsonb_build_object(CASE WHEN status = 'processed' THEN 'reprocess_failure' ELSE 'failure' END, "
        "jsonb_build_object('reason', $3::text, 'at', $4::text)) END "
        "WHERE id = $2 AND user_id = $1 RETURNING status",
        user_id,
        conversation_id,
        reason,
        utc_now().isoformat(),
    )
    if status is None:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")
    return str(status)


async def count_attachment_wait(db: Executor, user_id: str, conversation_id: str) -> int:
    """Count one more time the conversation's ingestion waited for its attachments to be read, in
    `metadata.attachment_wait` ({"deferrals": n, "last_at": ISO 8601}); returns n. The count is kept for the
    conversation's life, so the wait is bounded however often the job is enqueued again (jobs/ingestion.py)."""
    count = await db.fetchval(
        "UPDATE conversations SET metadata = "
        "(CASE WHEN metadata IS NULL OR metadata = 'null'::jsonb THEN '{}'::jsonb "
        "WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
        "ELSE jsonb_build_object('previous_metadata', metadata) END) "
        "|| jsonb_build_object('attachment_wait', jsonb_build_object('deferrals', "
        "COALESCE(CASE WHEN jsonb_typeof(metadata -> 'attachment_wait' -> 'deferrals') = 'number' "
        "THEN (metadata -> 'attachment_wait' ->> 'deferrals')::numeric::int END, 0) + 1, 'last_at', $3::text)) "
        "WHERE id = $2 AND user_id = $1 RETURNING (metadata -> 'attachment_wait' ->> 'deferrals')::int",
        user_id,
        conversation_id,
        utc_now().isoformat(),
    )
    if count is None:
        raise NotFoundError(f"conversation {conversation_id} not found for user {user_id}")
    return int(count)


class ConversationForJob(Record):
    """A conversation read by its bare id for a job, with what the job needs of its owner: every part is the
    owner's (the messages of this conversation, the owner's memory profile, relevant concepts and newest memory
    units from their other conversations)."""

    conversation: ConversationRecord
    messages: list[MessageRecord]
    memory_profile: JsonObject
    concepts: list[ConceptRecord]
    language_preference: str | None = None
    memories: list[MemoryUnitRecord] = Field(default_factory=list)


async def read_conversation_for_job(
    db: Executor, conversation_id: str, *, concept_limit: int, memory_limit: int = 0
) -> ConversationForJob | None:
    """The one function without a user id, by design: a job is enqueued with a bare conversation id, and this
    resolves the owner together with everything the job reads, in one round trip (five separate reads were a
    fifth of an ingestion's statements). Everything after it is scoped to `conversation.user_id`.

    Every part is reached from the conversation row's own user id, so it can only return that owner's data.
    """
    row = await db.fetchrow(
        f"""
        SELECT c.*,
            (SELECT u.memory_profile FROM users u WHERE u.user_id = c.user_id) AS job_memory_profile,
            (SELECT u.language_preference FROM users u WHERE u.user_id = c.user_id) AS job_language_preference,
            (SELECT COALESCE(json_agg(m ORDER BY m.timestamp, m.seq), '[]')
             FROM conversation_messages m WHERE m.conversation_id = c.id) AS job_messages,
            (SELECT COALESCE(json_agg(k ORDER BY {RELEVANCE_ORDER}), '[]')
             FROM (SELECT * FROM concepts WHERE user_id = c.user_id AND status = 'active'
                   ORDER BY {RELEVANCE_ORDER} LIMIT $2) AS k) AS job_concepts,
            (SELECT COALESCE(json_agg(u ORDER BY u.ingestion_ts DESC, u.muid), '[]')
             FROM (SELECT * FROM memory_units WHERE user_id = c.user_id
                   AND source_conversation_id IS DISTINCT FROM c.id
                   ORDER BY ingestion_ts DESC, muid LIMIT $3) AS u) AS job_memories
        FROM conversations c WHERE c.id = $1
        """,
        conversation_id,
        concept_limit,
        memory_limit,
    )
    if row is None:
        return None
    return ConversationForJob(
        conversation=ConversationRecord.from_row(row),
        messages=row["job_messages"],
        memory_profile=row["job_memory_profile"],
        concepts=row["job_concepts"],
        language_preference=row["job_language_preference"],
        memories=row["job_memories"],
    )


# --- the sweeps: across users, by nature (the minute timeout sweep, jobs/maintenance.py) --------------------------

_UTC_NOW = "(now() AT TIME ZONE 'UTC')"


async def end_silent_conversations(db: Executor, *, timeout_minutes: float, limit: int) -> list[str]:
    """`active` conversations of every user whose last message (or start, without messages) is older than the
    timeout become `ended`, with ended_at = that last activity: the conversation ended when the user stopped
    talking. A sweep, hence without a user id."""
    rows = await db.fetch(
        f"""
        WITH silent AS (
            SELECT c.id, COALESCE(last.at, c.start_time) AS last_at
            FROM public.conversations c
            LEFT JOIN LATERAL (
                SELECT max(m."timestamp") AS at FROM public.conversation_messages m WHERE m.conversation_id = c.id
            ) last ON true
            WHERE c.status = 'active'
              AND COALESCE(last.at, c.start_time) < {_UTC_NOW} - $1 * interval '1 minute'
            ORDER BY 2
            LIMIT $2
            FOR UPDATE OF c SKIP LOCKED
        )
        UPDATE public.conversations c
        SET status = 'ended', ended_at = silent.last_at
        FROM silent
        WHERE c.id = silent.id AND c.status = 'active'
        RETURNING c.id
        """,
        timeout_minutes,
        limit,
    )
    return [r["id"] for r in rows]


AWAITING_INGESTION = ("ended", "processing")
"""The statuses the timeout sweep enqueues ingestion for."""


async def awaits_ingestion(db: Executor, conversation_id: str) -> bool:
    """Whether the conversation is still waiting for ingestion (one of AWAITING_INGESTION) as of now. It is asked
    without a user id, by the sweep, of each conversation `ended_conversation_ids` listed (across users by nature)."""
    status = await db.fetchval("SELECT status FROM public.conversations WHERE id = $1", conversation_id)
    return status in AWAITING_INGESTION


async def ended_conversation_ids(db: Executor, *, limit: int) -> list[str]:
    """Conversations of every user waiting for ingestion, oldest first (ended by the sweep or by the web app).

    `processing` ones too: their job is normally queued or running (then the enqueue is a no-op under the dedupe
    key), but one whose job was lost with Redis must not stay `processing` for ever.
    """
    rows = await db.fetch(
        "SELECT id FROM public.conversations WHERE status = ANY($2::text[]) ORDER BY ended_at NULLS FIRST, id LIMIT $1",
        limit,
        list(AWAITING_INGESTION),
    )
    return [r["id"] for r in rows]
