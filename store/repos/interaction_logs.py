"""public.interaction_logs: what the user did in the app (card opened, prompt answered…), append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store.postgres import Executor
from store.repos._base import JsonObject, Record, UtcDatetime, json_object, new_id, opt_to_db, to_db, utc_now


class InteractionLogRecord(Record):
    interaction_id: str
    user_id: str
    timestamp: UtcDatetime
    interaction_type: str
    target_entity_id: str | None
    target_entity_type: str | None
    content_text: str | None
    content_structured: JsonObject
    metadata: JsonObject


async def log_interaction(
    db: Executor,
    user_id: str,
    *,
    interaction_type: str,
    target_entity_id: str | None = None,
    target_entity_type: str | None = None,
    content_text: str | None = None,
    content_structured: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    interaction_id: str | None = None,
) -> InteractionLogRecord:
    row = await db.fetchrow(
        "INSERT INTO interaction_logs (interaction_id, user_id, timestamp, interaction_type, target_entity_id, "
        "target_entity_type, content_text, content_structured, metadata) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        interaction_id or new_id(), user_id, to_db(timestamp or utc_now()), interaction_type, target_entity_id,
        target_entity_type, content_text, json_object(content_structured, "content_structured"),
        json_object(metadata, "metadata"),
    )  # fmt: skip
    return InteractionLogRecord.from_row(row)


async def get_interaction(db: Executor, user_id: str, interaction_id: str) -> InteractionLogRecord | None:
    row = await db.fetchrow(
        "SELECT * FROM interaction_logs WHERE user_id = $1 AND interaction_id = $2", user_id, interaction_id
    )
    return InteractionLogRecord.from_optional(row)


async def list_interactions(
    db: Executor,
    user_id: str,
    *,
    interaction_type: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[InteractionLogRecord]:
    """The user's interactions, oldest first, optionally of one type and from `since` on."""
    rows = await db.fetch(
        "SELECT * FROM interaction_logs WHERE user_id = $1 AND ($2::text IS NULL OR interaction_type = $2) "
        "AND ($3::timestamp IS NULL OR timestamp >= $3) ORDER BY timestamp, interaction_id LIMIT $4",
        user_id, interaction_type, opt_to_db(since), limit,
    )  # fmt: skip
    return [InteractionLogRecord.from_row(row) for row in rows]
