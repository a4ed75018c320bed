"""public.user_graph_projections: the 3D cosmos layouts the web app renders, newest one wins."""

from __future__ import annotations

from typing import Any

from store.postgres import Executor
from store.repos._base import (
    Record,
    RequiredJsonObject,
    UtcDatetime,
    json_object,
    to_db,
    utc_now,
)


class GraphProjectionRecord(Record):
    projection_id: str
    user_id: str
    status: str
    projection_data: RequiredJsonObject
    created_at: UtcDatetime


async def insert_graph_projection(db: Executor, user_id: str, projection_id: str, data: dict[str, Any]) -> bool:
    """Insert a completed projection once; False when one with this id (the same input) exists already."""
    inserted = await db.fetchval(
        "INSERT INTO user_graph_projections (projection_id, user_id, status, projection_data, created_at) "
        "VALUES ($1, $2, 'completed', $3, $4) ON CONFLICT (projection_id) DO NOTHING RETURNING projection_id",
        projection_id,
        user_id,
        json_object(data, "projection_data"),
        to_db(utc_now()),
    )
    return inserted is not None


async def graph_projection_exists(db: Executor, user_id: str, projection_id: str) -> bool:
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM user_graph_projections WHERE user_id = $1 AND projection_id = $2)",
        user_id,
        projection_id,
    )
    return bool(found)


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
