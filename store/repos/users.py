"""public.users: the one table where the user id is the row itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    UtcDatetime,
    Write,
    apply,
    json_object,
    row_count,
    to_db,
    utc_now,
)


class UserRecord(Record):
    user_id: str
    email: str
    hashed_password: str | None
    name: str | None
    region: str
    timezone: str | None
    language_preference: str | None
    profile_picture_url: str | None
    account_status: str
    created_at: UtcDatetime
    last_active_at: UtcDatetime | None
    memory_profile: JsonObject
    knowledge_graph_schema: JsonObject
    next_conversation_context_package: JsonObject
    last_cycle_started_at: UtcDatetime | None
    concepts_created_in_cycle: int
    preferences: JsonObject


async def create_user(
    db: Executor,
    user_id: str,
    *,
    email: str,
    name: str | None = None,
    timezone: str = "UTC",
    language_preference: str = "en",
    memory_profile: dict[str, Any] | None = None,
    preferences: dict[str, Any] | None = None,
) -> UserRecord:
    """Insert a user with the given id (the web app owns sign-up; the runtime creates users for samples and tests)."""
    now = to_db(utc_now())
    row = await db.fetchrow(
        "INSERT INTO users (user_id, email, name, timezone, language_preference, memory_profile, preferences, "
        "created_at, last_active_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *",
        user_id,
        email,
        name,
        timezone,
        language_preference,
        json_object(memory_profile, "memory_profile"),
        json_object(preferences, "preferences"),
        now,
    )
    return UserRecord.from_row(row)


async def get_user(db: Executor, user_id: str) -> UserRecord | None:
    return UserRecord.from_optional(await db.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id))


async def _update(db: Executor, user_id: str, assignments: str, *args: Any) -> None:
    """Run `UPDATE users SET <assignments>` for this user; $1 is the user id.

    last_active_at (`@updatedAt` in the Prisma schema) is not touched: everything Orrery writes on a user is
    background work (ingestion, cycles), not the user's activity, which is the web app's to record.
    """
    await apply(db, _updating(user_id, assignments, *args))


def _updating(user_id: str, assignments: str, *args: Any) -> Write:
    def found(count: int) -> int:
        if count == 0:
            raise NotFoundError(f"user {user_id} not found")
        return count

    return Write(f"UPDATE users SET {assignments} WHERE user_id = $1", (user_id, *args), found)


async def record_ingestion(
    db: Executor, user_id: str, *, concepts_created: int, next_context: dict[str, Any] | None
) -> None:
    """What one ingestion changes on the user, in one statement: the cycle's concept count goes up by
    `concepts_created` (an increment, so concurrent jobs do not lose each other's) and, when given, `next_context`
    becomes the next-conversation package."""
    await apply(db, recording_ingestion(user_id, concepts_created=concepts_created, next_context=next_context))


def recording_ingestion(user_id: str, *, concepts_created: int, next_context: dict[str, Any] | None) -> Write:
    """`record_ingestion` as a Write, to send with others."""
    return _updating(
        user_id,
        "concepts_created_in_cycle = concepts_created_in_cycle + $2, "
        "next_conversation_context_package = COALESCE($3::jsonb, next_conversation_context_package)",
        concepts_created,
        None if next_context is None else json_object(next_context, "next_context"),
    )


async def record_insight(
    db: Executor,
    user_id: str,
    *,
    memory_profile: dict[str, Any] | None,
    knowledge_graph_schema: dict[str, Any] | None,
    next_context: dict[str, Any] | None,
) -> None:
    """What a cycle's insight changes on the user, in one statement: the profile and graph schema it wrote, and,
    when given, the next-conversation package."""
    await _update(
        db,
        user_id,
        "memory_profile = $2, knowledge_graph_schema = $3, "
        "next_conversation_context_package = COALESCE($4::jsonb, next_conversation_context_package)",
        json_object(memory_profile, "memory_profile"),
        json_object(knowledge_graph_schema, "knowledge_graph_schema"),
        json_object(next_context, "next_context"),
    )


async def lock_user(db: Executor, user_id: str) -> bool:
    """Lock the user's row until the caller's transaction ends (as ingestion and insight do before they write the
    next-conversation package), so a package write and a prompts write take turns; False when the user is gone."""
    found = await db.fetchval("SELECT true FROM users WHERE user_id = $1 FOR NO KEY UPDATE", user_id)
    return bool(found)


async def set_package_prompts(db: Executor, user_id: str, prompts: list[dict[str, Any]]) -> bool:
    """Replace the `proactive_prompts` of the user's next-conversation package, keeping its other keys; a user
    without a package (no conversation has written one yet) is left as is. True when a package was changed."""
    status = await db.execute(
        "UPDATE users SET next_conversation_context_package = "
        "jsonb_set(next_conversation_context_package, '{proactive_prompts}', $2::jsonb) "
        "WHERE user_id = $1 AND jsonb_typeof(next_conversation_context_package) = 'object'",
        user_id,
        prompts,
    )
    return row_count(status) == 1


async def start_cycle(db: Executor, user_id: str, at: datetime) -> None:
    """Begin a new growth cycle at `at`: the per-cycle concept count starts again from zero."""
    await _update(db, user_id, "last_cycle_started_at = $2, concepts_created_in_cycle = 0", to_db(at))
