"""public.proactive_prompts: what the companion may bring up next, queued by priority until delivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.vocabulary import PromptStatus
from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    Record,
    UtcDatetime,
    row_count,
    to_db,
    utc_now,
)

PENDING = PromptStatus.PENDING.value
EXPIRED = PromptStatus.EXPIRED.value
PACKAGED_PROMPTS = 3
"""How many pending prompts ride in the next-conversation package: the best few, not the whole queue."""


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


def expires_at(prompt: ProactivePromptRecord) -> datetime | None:
    """When the prompt stops being deliverable (`metadata.expires_at`, written with it); None when it carries none or
    an unreadable one (a row from before prompts were delivered through the package)."""
    value = (prompt.metadata or {}).get("expires_at")
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


class NewPromptRow(BaseModel):
    """One prompt for `insert_prompts`, pending from its creation."""

    prompt_id: str
    prompt_text: str
    source_agent: str
    priority: int
    metadata: dict[str, Any]


async def insert_prompts(db: Executor, user_id: str, prompts: Sequence[NewPromptRow]) -> None:
    """Insert pending prompts in one round trip; one whose id exists already is left as it is."""
    now = to_db(utc_now())
    await db.executemany(
        "INSERT INTO proactive_prompts (prompt_id, user_id, prompt_text, source_agent, status, priority, created_at, "
        "metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (prompt_id) DO NOTHING",
        [(p.prompt_id, user_id, p.prompt_text, p.source_agent, PENDING, p.priority, now, p.metadata) for p in prompts],
    )


async def expire_pending(db: Executor, user_id: str, *, created_before: datetime, now: datetime) -> int:
    """Pending prompts created before `created_before` or whose `metadata.expires_at` has passed by `now` become
    `expired` (nobody delivered them in time)."""
    status = await db.execute(
        "UPDATE proactive_prompts SET status = $3 WHERE user_id = $1 AND status = $4 AND (created_at < $2 "
        "OR CASE WHEN metadata->>'expires_at' ~ '^\\d{4}-\\d{2}-\\d{2}T' "
        "THEN (metadata->>'expires_at')::timestamptz <= $5 ELSE false END)",
        user_id,
        to_db(created_before),
        EXPIRED,
        PENDING,
        now,
    )
    return row_count(status)


async def deliverable(db: Executor, user_id: str, *, now: datetime, limit: int) -> list[ProactivePromptRecord]:
    """The best `limit` prompts the companion may still ask: pending and not past their `expires_at`, highest
    priority first, then oldest. A prompt without a readable `expires_at` is never offered (its expiry is unknown)."""
    rows = await db.fetch(
        "SELECT * FROM proactive_prompts WHERE user_id = $1 AND status = $2 "
        "ORDER BY priority DESC, created_at, prompt_id",
        user_id,
        PENDING,
    )
    prompts = [ProactivePromptRecord.from_row(row) for row in rows]
    return [p for p in prompts if (at := expires_at(p)) is not None and at > now][:limit]


async def mark_delivered(db: Executor, user_id: str, prompt_id: str, *, at: datetime) -> bool:
    """The web app's statement when the companion asks a packaged prompt (docs/contract.md; the demo runs it in the
    web app's place): only a pending prompt is claimed, so a prompt delivered, answered or expired meanwhile is
    skipped. True when this call delivered it."""
    status = await db.execute(
        "UPDATE proactive_prompts SET status = $4, delivered_at = $3 WHERE prompt_id = $2 AND user_id = $1 "
        "AND status = $5",
        user_id,
        prompt_id,
        to_db(at),
        PromptStatus.DELIVERED.value,
        PENDING,
    )
    return row_count(status) == 1


async def pending_texts(db: Executor, user_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT prompt_text FROM proactive_prompts WHERE user_id = $1 AND status = $2", user_id, PENDING
    )
    return [row["prompt_text"] for row in rows]


async def run_wrote_prompts(db: Executor, user_id: str, run_key: str) -> bool:
    """Whether the run keyed `run_key` (a cycle's or a day's) has written prompts."""
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM proactive_prompts WHERE user_id = $1 AND metadata->>'run_key' = $2)",
        user_id,
        run_key,
    )
    return bool(found)


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
