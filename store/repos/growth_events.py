"""public.growth_events: signed steps along the six growth dimensions, each tied to a memory unit or concept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    Record,
    UtcDatetime,
    Write,
    apply,
    json_object,
    new_id,
    row_count,
    to_db,
    utc_now,
)


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


class NewGrowthEvent(BaseModel):
    """One event for `insert_growth_events`; `event_id` None gets a new id."""

    entity_id: str
    entity_type: str
    dim_key: str
    delta: float
    source: str
    details: dict[str, Any] | None = None
    event_id: str | None = None


async def insert_growth_events(db: Executor, user_id: str, events: Sequence[NewGrowthEvent]) -> int:
    """Insert the events in one statement; an event whose id exists already (a rerun of the insight that derived
    it) is left as it is. Returns how many were inserted. Put `source_conversation_id` in `details` so re-ingestion
    can remove an event again."""
    return await apply(db, inserting(user_id, events))


def inserting(user_id: str, events: Sequence[NewGrowthEvent]) -> Write | None:
    """`insert_growth_events` as a Write, to send with others (None: no events)."""
    if not events:
        return None
    return Write(
        "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at, "
        "details) SELECT e.id, $1, e.entity, e.kind, e.dim, e.delta, e.source, $2, e.details::jsonb "
        "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[]) "
        "AS e(id, entity, kind, dim, delta, source, details) ON CONFLICT (event_id) DO NOTHING",
        (
            user_id,
            to_db(utc_now()),
            [e.event_id or new_id() for e in events],
            [e.entity_id for e in events],
            [e.entity_type for e in events],
            [e.dim_key for e in events],
            [e.delta for e in events],
            [e.source for e in events],
            [None if e.details is None else json.dumps(json_object(e.details, "details")) for e in events],
        ),
    )


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


async def repoint_entity(db: Executor, user_id: str, primary_id: str, gone: Sequence[str]) -> None:
    """After a merge: the events about the merged concepts are about the concept kept."""
    await db.execute(
        "UPDATE growth_events SET entity_id = $2 WHERE user_id = $1 AND entity_type = 'Concept' "
        "AND entity_id = ANY($3::text[])",
        user_id,
        primary_id,
        list(gone),
    )


async def delete_growth_events_about(db: Executor, user_id: str, entity_ids: Sequence[str]) -> int:
    """Delete the user's growth events about these entities (a memory unit the user asked to forget)."""
    result = await db.execute(
        "DELETE FROM growth_events WHERE user_id = $1 AND entity_id = ANY($2::text[])", user_id, list(entity_ids)
    )
    return row_count(result)
