"""public.user_sessions: the web app's login sessions; the runtime reads them and cleans up expired ones."""

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
    row_count,
    to_db,
    utc_now,
)


class UserSessionRecord(Record):
    session_id: str
    user_id: str
    device_info: JsonObject
    ip_address: str | None
    user_agent: str | None
    created_at: UtcDatetime
    expires_at: UtcDatetime
    last_active_at: UtcDatetime


async def create_session(
    db: Executor,
    user_id: str,
    *,
    expires_at: datetime,
    device_info: dict[str, Any] | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    session_id: str | None = None,
) -> UserSessionRecord:
    now = to_db(utc_now())
    row = await db.fetchrow(
        "INSERT INTO user_sessions (session_id, user_id, device_info, ip_address, user_agent, created_at, expires_at, "
        "last_active_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6) RETURNING *",
        session_id or new_id(), user_id, json_object(device_info, "device_info"), ip_address, user_agent, now,
        to_db(expires_at),
    )  # fmt: skip
    return UserSessionRecord.from_row(row)


async def get_session(db: Executor, user_id: str, session_id: str) -> UserSessionRecord | None:
    row = await db.fetchrow("SELECT * FROM user_sessions WHERE user_id = $1 AND session_id = $2", user_id, session_id)
    return UserSessionRecord.from_optional(row)


async def list_sessions(db: Executor, user_id: str) -> list[UserSessionRecord]:
    rows = await db.fetch("SELECT * FROM user_sessions WHERE user_id = $1 ORDER BY created_at, session_id", user_id)
    return [UserSessionRecord.from_row(row) for row in rows]


async def touch_session(db: Executor, user_id: str, session_id: str) -> None:
    """Record activity on the session (last_active_at is @updatedAt)."""
    result = await db.execute(
        "UPDATE user_sessions SET last_active_at = $3 WHERE user_id = $1 AND session_id = $2",
        user_id, session_id, to_db(utc_now()),
    )  # fmt: skip
    if row_count(result) == 0:
        raise NotFoundError(f"session {session_id} not found for user {user_id}")


async def delete_expired_sessions(db: Executor, user_id: str, *, now: datetime | None = None) -> int:
    """Delete the user's sessions that expired before `now`; returns how many."""
    result = await db.execute(
        "DELETE FROM user_sessions WHERE user_id = $1 AND expires_at < $2", user_id, to_db(now or utc_now())
    )
    return row_count(result)
