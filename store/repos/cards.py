"""public.cards: what the web app shows on the user's canvas, at most one per source entity."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    serialized,
    to_db,
    utc_now,
)

CARD_STATUSES = ("active_canvas", "active_archive", "completed")
PREVIEW_CHARS = 280
"""A memory card shows this much of the memory's content."""


def memory_display(title: str, content: str, importance: float | None) -> dict[str, Any]:
    """display_data of a `memory` card (docs/contract.md: MemoryCardDisplay), for a new card and after a revision."""
    return {"title": title, "preview": content[:PREVIEW_CHARS], "importance": importance}


def concept_display(name: str, kind: str, description: str | None) -> dict[str, Any]:
    """display_data of a `concept` card (docs/contract.md: ConceptCardDisplay)."""
    return {"title": name, "subtitle": kind, "description": description}


class CardRecord(Record):
    card_id: str
    user_id: str
    card_type: str
    source_entity_id: str
    source_entity_type: str
    status: str
    is_favorited: bool
    display_data: JsonObject
    is_synced: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


async def ensure_card(
    db: Executor,
    user_id: str,
    *,
    card_type: str,
    source_entity_id: str,
    source_entity_type: str,
    display_data: dict[str, Any] | None,
    card_id: str | None = None,
) -> tuple[CardRecord, bool]:
    """The user's card for this entity, created when there is none; returns (card, created).

    There is no unique index on (user_id, source_entity_id, source_entity_type) in the Prisma schema, so racers
    for the same entity take turns on an advisory lock before the conditional insert.
    """
    async with serialized(db, f"card:{user_id}:{source_entity_type}:{source_entity_id}") as conn:
        now = to_db(utc_now())
        inserted = await conn.fetchrow(
            "INSERT INTO cards (card_id, user_id, card_type, source_entity_id, source_entity_type, display_data, "
            "created_at, updated_at) SELECT $1, $2, $3, $4, $5, $6, $7, $7 WHERE NOT EXISTS (SELECT 1 FROM cards "
            "WHERE user_id = $2 AND source_entity_id = $4 AND source_entity_type = $5) RETURNING *",
            card_id or new_id(),
            user_id,
            card_type,
            source_entity_id,
            source_entity_type,
            json_object(display_data, "display_data"),
            now,
        )
        if inserted is not None:
            return CardRecord.from_row(inserted), True
        existing = await conn.fetchrow(
            "SELECT * FROM cards WHERE user_id = $1 AND source_entity_id = $2 AND source_entity_type = $3 "
            "ORDER BY created_at, card_id LIMIT 1",
            user_id,
            source_entity_id,
            source_entity_type,
        )
        return CardRecord.from_row(existing), False


class NewCard(BaseModel):
    """One card for `ensure_cards`."""

    card_type: str
    source_entity_id: str
    source_entity_type: str
    display_data: dict[str, Any] | None = None


async def ensure_cards(db: Executor, user_id: str, new_cards: Sequence[NewCard]) -> int:
    """`ensure_card` for many entities in two round trips (one for all the locks, one insert); returns how many
    were created. Ingestion writes a card per new entity, and one statement per card was most of its write cost."""
    wanted = _one_per_entity(new_cards)
    if not wanted:
        return 0
    keys = [f"card:{user_id}:{c.source_entity_type}:{c.source_entity_id}" for c in wanted]
    async with serialized(db, keys) as conn:
        return await apply(conn, _inserting(user_id, wanted, only_missing=True))


async def insert_cards_for_new_entities(db: Executor, user_id: str, new_cards: Sequence[NewCard]) -> int:
    """One card per entity that the caller created in its own, still open transaction, in one statement.

    Why no lock and no existence check: no other transaction can see those entities before the caller commits, so
    nobody else can be carding them; ensure_cards' locks would only cost a round trip. Entities that existed before
    the transaction (a concept reused, a memory unit re-derived) go through ensure_cards."""
    return await apply(db, carding_new_entities(user_id, new_cards))


def carding_new_entities(user_id: str, new_cards: Sequence[NewCard]) -> Write | None:
    """`insert_cards_for_new_entities` as a Write, to send with others (None: no cards)."""
    return _inserting(user_id, _one_per_entity(new_cards), only_missing=False)


def _one_per_entity(new_cards: Sequence[NewCard]) -> list[NewCard]:
    return list({(c.source_entity_type, c.source_entity_id): c for c in new_cards}.values())


def _inserting(user_id: str, wanted: list[NewCard], *, only_missing: bool) -> Write | None:
    if not wanted:
        return None
    missing = (
        " WHERE NOT EXISTS (SELECT 1 FROM cards c WHERE c.user_id = $1 AND c.source_entity_id = n.source_entity_id "
        "AND c.source_entity_type = n.source_entity_type)"
        if only_missing
        else ""
    )
    return Write(
        "INSERT INTO cards (card_id, user_id, card_type, source_entity_id, source_entity_type, display_data, "
        "created_at, updated_at) SELECT n.card_id, $1, n.card_type, n.source_entity_id, n.source_entity_type, "
        "n.display_data::jsonb, $2, $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) "
        f"AS n(card_id, card_type, source_entity_id, source_entity_type, display_data){missing}",
        (
            user_id,
            to_db(utc_now()),
            [new_id() for _ in wanted],
            [c.card_type for c in wanted],
            [c.source_entity_id for c in wanted],
            [c.source_entity_type for c in wanted],
            [
                None if c.display_data is None else json.dumps(json_object(c.display_data, "display_data"))
                for c in wanted
            ],
        ),
    )


async def list_cards(db: Executor, user_id: str, *, status: str | None = None) -> list[CardRecord]:
    rows = await db.fetch(
        "SELECT * FROM cards WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY created_at, card_id",
        user_id,
        status,
    )
    return [CardRecord.from_row(row) for row in rows]


async def refresh_display(
    db: Executor, user_id: str, source_entity_type: str, displays: Mapping[str, dict[str, Any]]
) -> int:
    """After a revision: the user's cards of these entities show their current values (`displays`: entity id -> the
    display_data keys to set; other keys the web app put there are kept). Returns how many cards changed."""
    if not displays:
        return 0
    status = await db.execute(
        "UPDATE cards c SET display_data = (CASE WHEN jsonb_typeof(c.display_data) = 'object' THEN c.display_data "
        "ELSE '{}'::jsonb END) || d.display::jsonb, updated_at = $3 "
        "FROM unnest($4::text[], $5::text[]) AS d(entity_id, display) "
        "WHERE c.user_id = $1 AND c.source_entity_type = $2 AND c.source_entity_id = d.entity_id",
        user_id,
        source_entity_type,
        to_db(utc_now()),
        list(displays),
        [json.dumps(json_object(display, "display_data")) for display in displays.values()],
    )
    return row_count(status)


async def delete_cards_for_entities(db: Executor, user_id: str, entity_ids: Sequence[str]) -> int:
    """Delete the user's cards about these entities (their memory units or concepts are going away)."""
    result = await db.execute(
        "DELETE FROM cards WHERE user_id = $1 AND source_entity_id = ANY($2::text[])", user_id, list(entity_ids)
    )
    return row_count(result)


async def move_concept_cards(
    db: Executor, user_id: str, primary_id: str, gone: Sequence[str], *, display: dict[str, Any]
) -> None:
    """After a merge: the primary keeps its card, or takes over the oldest card of a merged concept (with
    `display`); the merged concepts' other cards go, and a favourite among them makes the kept card a favourite."""
    rows = await db.fetch(
        "SELECT card_id, source_entity_id, is_favorited FROM cards WHERE user_id = $1 "
        "AND source_entity_type = 'Concept' AND source_entity_id = ANY($2::text[]) ORDER BY created_at, card_id",
        user_id,
        [primary_id, *gone],
    )
    if not rows:
        return
    kept = next((r for r in rows if r["source_entity_id"] == primary_id), rows[0])
    await db.execute(
        "UPDATE cards SET source_entity_id = $3, is_favorited = $4, updated_at = $5, "
        "display_data = CASE WHEN source_entity_id = $3 THEN display_data ELSE $6::jsonb END "
        "WHERE user_id = $1 AND card_id = $2",
        user_id,
        kept["card_id"],
        primary_id,
        any(r["is_favorited"] for r in rows),
        to_db(utc_now()),
        json_object(display, "display_data"),
    )
    await db.execute(
        "DELETE FROM cards WHERE user_id = $1 AND card_id = ANY($2::text[])",
        user_id,
        [r["card_id"] for r in rows if r["card_id"] != kept["card_id"]],
    )
