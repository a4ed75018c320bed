"""public.growth_events: signed steps along the six growth dimensions, each tied to a memory unit or concept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import JsonObject, Record, UtcDatetime, json_object, new_id, row_count, to_db, utc_now


class GrowthEventRecord(Record):
    event_id: str
    user_id: str
    entity_id: str
    entity_type: str
    dim_key: str
    delta: float
    source: str
    created_at: UtcDatetime
    details: JsonObject


async def insert_growth_event(
    db: Executor,
    user_id: str,
    *,
    entity_id: str,
    entity_type: str,
    dim_key: str,
    delta: float,
    source: str,
    details: dict[str, Any] | None,
    event_id: str | None = None,
) -> GrowthEventRecord:
    """Insert an event; put `source_conversation_id` in `details` so re-ingestion can remove it again."""
    row = await db.fetchrow(
        "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at, "
        "details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        event_id or new_id(),
        user_id,
        entity_id,
        entity_type,
        dim_key,
        delta,
        source,
        to_db(utc_now()),
        json_object(details, "details"),
    )
    return GrowthEventRecord.from_row(row)


class NewGrowthEvent(BaseModel):
    """One event for `insert_growth_events`."""

    entity_id: str
    entity_type: str
    dim_key: str
    delta: float
    source: str
    details: dict[str, Any] | None = None


async def insert_growth_events(db: Executor, user_id: str, events: Sequence[NewGrowthEvent]) -> None:
    """Insert several events in one pipelined round trip (ingestion writes a handful per conversation)."""
    now = to_db(utc_now())
    await db.executemany(
        "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at, "
        "details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                new_id(),
                user_id,
                e.entity_id,
                e.entity_type,
                e.dim_key,
                e.delta,
                e.source,
                now,
                json_object(e.details, "details"),
            )
            for e in events
        ],
    )


async def list_growth_events(db: Executor, user_id: str, *, entity_id: str | None = None) -> list[GrowthEventRecord]:
    rows = await db.fetch(
        "SELECT * FROM growth_events WHERE user_id = $1 AND ($2::text IS NULL OR entity_id = $2) "
        "ORDER BY created_at, event_id",
        user_id,
        entity_id,
    )
    return [GrowthEventRecord.from_row(row) for row in rows]


async def growth_by_dimension(db: Executor, user_id: str) -> dict[str, float]:
    """The user's summed delta per dimension (only dimensions with events appear)."""
    rows = await db.fetch(
        "SELECT dim_key, SUM(delta) AS total FROM growth_events WHERE user_id = $1 GROUP BY dim_key ORDER BY dim_key",
        user_id,
    )
    return {row["dim_key"]: float(row["total"]) for row in rows}


async def delete_growth_events_from_conversation(db: Executor, user_id: str, conversation_id: str) -> int:
    """Delete the events whose details name this source conversation; returns how many."""
    status = await db.execute(
        "DELETE FROM growth_events WHERE user_id = $1 AND details->>'source_conversation_id' = $2",
        user_id,
        conversation_id,
    )
    return row_count(status)
