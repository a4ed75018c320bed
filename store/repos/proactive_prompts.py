"""public.proactive_prompts: what the companion may bring up next, queued by priority until delivered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    UtcDatetime,
    json_object,
    new_id,
    opt_to_db,
    row_count,
    to_db,
    utc_now,
)


class ProactivePromptRecord(Record):
    prompt_id: str
    user_id: str
    prompt_text: str
    source_agent: str
    status: str
    priority: int
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None
    metadata: JsonObject


async def create_proactive_prompt(
    db: Executor,
    user_id: str,
    *,
    prompt_text: str,
    source_agent: str,
    priority: int = 5,
    status: str = "pending",
    metadata: dict[str, Any] | None = None,
    prompt_id: str | None = None,
) -> ProactivePromptRecord:
    row = await db.fetchrow(
        "INSERT INTO proactive_prompts (prompt_id, user_id, prompt_text, source_agent, status, priority, created_at, "
        "metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        prompt_id or new_id(),
        user_id,
        prompt_text,
        source_agent,
        status,
        priority,
        to_db(utc_now()),
        json_object(metadata, "metadata"),
    )
    return ProactivePromptRecord.from_row(row)


async def get_proactive_prompt(db: Executor, user_id: str, prompt_id: str) -> ProactivePromptRecord | None:
    row = await db.fetchrow("SELECT * FROM proactive_prompts WHERE user_id = $1 AND prompt_id = $2", user_id, prompt_id)
    return ProactivePromptRecord.from_optional(row)


async def list_proactive_prompts(
    db: Executor, user_id: str, *, status: str | None = None
) -> list[ProactivePromptRecord]:
    """The user's prompts in delivery order: highest priority first, then oldest."""
    rows = await db.fetch(
        "SELECT * FROM proactive_prompts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) "
        "ORDER BY priority DESC, created_at, prompt_id",
        user_id,
        status,
    )
    return [ProactivePromptRecord.from_row(row) for row in rows]


async def set_proactive_prompt_status(
    db: Executor, user_id: str, prompt_id: str, status: str, *, delivered_at: datetime | None = None
) -> None:
    """Change the status; `delivered_at` is stamped when given (a prompt shown to the user)."""
    result = await db.execute(
        "UPDATE proactive_prompts SET status = $3, delivered_at = COALESCE($4, delivered_at) "
        "WHERE user_id = $1 AND prompt_id = $2",
        user_id,
        prompt_id,
        status,
        opt_to_db(delivered_at),
    )
    if row_count(result) == 0:
        raise NotFoundError(f"proactive prompt {prompt_id} not found for user {user_id}")
