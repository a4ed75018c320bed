"""public.user_graph_projections: the 3D cosmos layouts the web app renders, newest one wins."""

from __future__ import annotations

from typing import Any

from store.postgres import Executor
from store.repos._base import (
    NotFoundError,
    Record,
    RequiredJsonObject,
    UtcDatetime,
    json_object,
    new_id,
    row_count,
    to_db,
    utc_now,
)


class GraphProjectionRecord(Record):
    projection_id: str
    user_id: str
    status: str
    projection_data: RequiredJsonObject
    created_at: UtcDatetime


async def create_graph_projection(
    db: Executor,
    user_id: str,
    *,
    projection_data: dict[str, Any],
    status: str = "completed",
    projection_id: str | None = None,
) -> GraphProjectionRecord:
    row = await db.fetchrow(
        "INSERT INTO user_graph_projections (projection_id, user_id, status, projection_data, created_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING *",
        projection_id or new_id(),
        user_id,
        status,
        json_object(projection_data, "projection_data"),
        to_db(utc_now()),
    )
    return GraphProjectionRecord.from_row(row)


async def get_graph_projection(db: Executor, user_id: str, projection_id: str) -> GraphProjectionRecord | None:
    row = await db.fetchrow(
        "SELECT * FROM user_graph_projections WHERE user_id = $1 AND projection_id = $2", user_id, projection_id
    )
    return GraphProjectionRecord.from_optional(row)


async def latest_graph_projection(
    db: Executor, user_id: str, *, status: str = "completed"
) -> GraphProjectionRecord | None:
    """The newest projection in `status` (the web app shows the latest completed one)."""
    row = await db.fetchrow(
        "SELECT * FROM user_graph_projections WHERE user_id = $1 AND status = $2 "
        "ORDER BY created_at DESC, projection_id DESC LIMIT 1",
        user_id,
        status,
    )
    return GraphProjectionRecord.from_optional(row)


async def list_graph_projections(db: Executor, user_id: str) -> list[GraphProjectionRecord]:
    """Newest first."""
    rows = await db.fetch(
        "SELECT * FROM user_graph_projections WHERE user_id = $1 ORDER BY created_at DESC, projection_id DESC",
        user_id,
    )
    return [GraphProjectionRecord.from_row(row) for row in rows]


async def set_graph_projection_status(db: Executor, user_id: str, projection_id: str, status: str) -> None:
    result = await db.execute(
        "UPDATE user_graph_projections SET status = $3 WHERE user_id = $1 AND projection_id = $2",
        user_id,
        projection_id,
        status,
    )
    if row_count(result) == 0:
        raise NotFoundError(f"graph projection {projection_id} not found for user {user_id}")
