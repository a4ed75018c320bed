"""public.memory_units: what ingestion remembers from a conversation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
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


class MemoryUnitRecord(Record):
    muid: str
    user_id: str
    title: str
    content: str
    creation_ts: UtcDatetime
    ingestion_ts: UtcDatetime
    last_modified_ts: UtcDatetime
    importance_score: float | None
    sentiment_score: float | None
    source_conversation_id: str | None
    metadata: JsonObject

    @property
    def source_conversation_ids(self) -> list[str]:
        """Every conversation that told this memory: its own, then those that retold or updated it
        (metadata.source_conversation_ids, written by a revision)."""
        listed = (self.metadata or {}).get("source_conversation_ids")
        found = [value for value in listed if isinstance(value, str)] if isinstance(listed, list) else []
        own = [self.source_conversation_id] if self.source_conversation_id else []
        return list(dict.fromkeys([*own, *found]))


class NewMemoryUnit(BaseModel):
    """One memory unit for `insert_memory_units`; `muid` None gets a new id."""

    title: str
    content: str
    creation_ts: datetime
    importance_score: float | None
    sentiment_score: float | None
    source_conversation_id: str | None
    metadata: dict[str, Any] | None = None
    muid: str | None = None


_REVISE = (
    " ON CONFLICT (muid) DO UPDATE SET title = EXCLUDED.title, content = EXCLUDED.content, "
    "creation_ts = EXCLUDED.creation_ts, last_modified_ts = EXCLUDED.last_modified_ts, "
    "importance_score = EXCLUDED.importance_score, sentiment_score = EXCLUDED.sentiment_score, "
    "metadata = EXCLUDED.metadata WHERE memory_units.user_id = EXCLUDED.user_id "
    "AND memory_units.source_conversation_id IS NOT DISTINCT FROM EXCLUDED.source_conversation_id"
)
"""How a reprocess revises a unit it derived before: in place, never another user's or another conversation's."""


async def insert_memory_units(
    db: Executor, user_id: str, units: Sequence[NewMemoryUnit], *, revise: bool = False
) -> int:
    """Insert units in one statement; all or none: NotFoundError (and nothing written) when any source conversation
    is not this user's. Returns how many were written.

    With `revise`, a unit whose id exists already (a reprocess derives the same ids) is updated in place, keeping
    its id, its ingestion time and everything that points at it (artifact sources, cards, edges)."""
    return await apply(db, inserting(user_id, units, revise=revise))


def inserting(user_id: str, units: Sequence[NewMemoryUnit], *, revise: bool = False) -> Write | None:
    """`insert_memory_units` as a Write, to send with others (None: no units)."""
    if not units:
        return None
    expected = len(units)

    def written(count: int) -> int:
        if count != expected:
            sources = sorted({u.source_conversation_id for u in units if u.source_conversation_id is not None})
            raise NotFoundError(f"conversation(s) {', '.join(sources)} not found for user {user_id}")
        return count

    return Write(
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
        "importance_score, sentiment_score, source_conversation_id, metadata) "
        "SELECT u.muid, $1, u.title, u.content, u.creation_ts, $2, $2, u.importance_score, u.sentiment_score, "
        "u.source_conversation_id, u.metadata::jsonb "
        "FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamp[], $7::float8[], $8::float8[], $9::text[], "
        "$10::text[]) AS u(muid, title, content, creation_ts, importance_score, sentiment_score, "
        "source_conversation_id, metadata) "
        "WHERE NOT EXISTS (SELECT 1 FROM unnest($9::text[]) AS s(id) WHERE s.id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = s.id AND c.user_id = $1))"
        + (_REVISE if revise else ""),
        (
            user_id,
            to_db(utc_now()),
            [u.muid or new_id() for u in units],
            [u.title for u in units],
            [u.content for u in units],
            [to_db(u.creation_ts) for u in units],
            [u.importance_score for u in units],
            [u.sentiment_score for u in units],
            [u.source_conversation_id for u in units],
            [None if u.metadata is None else json.dumps(json_object(u.metadata, "metadata")) for u in units],
        ),
        written,
    )


async def list_memory_units(
    db: Executor, user_id: str, *, source_conversation_id: str | None = None
) -> list[MemoryUnitRecord]:
    """The user's memory units, oldest first; only one conversation's when given."""
    rows = await db.fetch(
        "SELECT * FROM memory_units WHERE user_id = $1 AND ($2::text IS NULL OR source_conversation_id = $2) "
        "ORDER BY creation_ts, muid",
        user_id,
        source_conversation_id,
    )
    return [MemoryUnitRecord.from_row(row) for row in rows]


async def memory_unit_ids_from_conversation(db: Executor, user_id: str, conversation_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT muid FROM memory_units WHERE user_id = $1 AND source_conversation_id = $2 ORDER BY muid",
        user_id,
        conversation_id,
    )
    return [row["muid"] for row in rows]


async def delete_memory_units(db: Executor, user_id: str, muids: Sequence[str]) -> list[str]:
    """Delete these of the user's memory units; returns the deleted ids for the outbox."""
    rows = await db.fetch(
        "DELETE FROM memory_units WHERE user_id = $1 AND muid = ANY($2::text[]) RETURNING muid", user_id, list(muids)
    )
    return sorted(row["muid"] for row in rows)


async def existing_memory_unit_ids(db: Executor, user_id: str, muids: Iterable[str]) -> set[str]:
    """Which of `muids` are still the user's memory units (one can go with a reprocessed conversation)."""
    wanted = sorted(set(muids))
    if not wanted:
        return set()
    rows = await db.fetch(
        "SELECT muid FROM memory_units WHERE user_id = $1 AND muid = ANY($2::text[])", user_id, wanted
    )
    return {row["muid"] for row in rows}


async def lock_memory_units(db: Executor, user_id: str, muids: Iterable[str]) -> list[MemoryUnitRecord]:
    """These of the user's memory units, their rows locked until the transaction ends (a revision's targets)."""
    wanted = sorted(set(muids))
    if not wanted:
        return []
    rows = await db.fetch(
        "SELECT * FROM memory_units WHERE user_id = $1 AND muid = ANY($2::text[]) ORDER BY muid FOR UPDATE",
        user_id,
        wanted,
    )
    return [MemoryUnitRecord.from_row(row) for row in rows]


class RevisedMemoryUnit(BaseModel):
    """A memory unit's new state after a revision (core/revisions.py computes it), for `revise_memory_units`."""

    muid: str
    title: str
    content: str
    creation_ts: datetime
    importance_score: float | None
    sentiment_score: float | None
    source_conversation_ids: list[str]


async def revise_memory_units(db: Executor, user_id: str, units: Sequence[RevisedMemoryUnit]) -> int:
    """Set the revised fields of these of the user's units in one statement, keeping their ids, ingestion time and
    everything that points at them; the sources go into metadata.source_conversation_ids. Returns how many changed."""
    if not units:
        return 0
    status = await db.execute(
        "UPDATE memory_units m SET title = u.title, content = u.content, creation_ts = u.creation_ts, "
        "importance_score = u.importance_score, sentiment_score = u.sentiment_score, last_modified_ts = $2, "
        "metadata = (CASE WHEN jsonb_typeof(m.metadata) = 'object' THEN m.metadata ELSE '{}'::jsonb END) "
        "|| jsonb_build_object('source_conversation_ids', u.sources::jsonb) "
        "FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamp[], $7::float8[], $8::float8[], $9::text[]) "
        "AS u(muid, title, content, creation_ts, importance_score, sentiment_score, sources) "
        "WHERE m.user_id = $1 AND m.muid = u.muid",
        user_id,
        to_db(utc_now()),
        [u.muid for u in units],
        [u.title for u in units],
        [u.content for u in units],
        [to_db(u.creation_ts) for u in units],
        [u.importance_score for u in units],
        [u.sentiment_score for u in units],
        [json.dumps(u.source_conversation_ids) for u in units],
    )
    return row_count(status)
