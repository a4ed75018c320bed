"""public.concepts: the user's people, places, values, goals…, deduplicated by normalized name and aliases.

Identity lives in `metadata = {"normalized_name": str, "aliases": [normalized names]}` (the names come from
agents.ingestion.normalize_concept_name). The database's unique key is the surface `(user_id, name, type)`, which
"Morning runs" and "morning runs" do not share, so creation takes an advisory lock per (user, type, normalized
name): concurrent ingestions of the same new concept produce one row.
"""

from __future__ import annotations

from typing import Any

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    UtcDatetime,
    new_id,
    row_count,
    serialized,
    to_db,
    utc_now,
)


class ConceptRecord(Record):
    concept_id: str
    user_id: str
    name: str
    type: str
    description: str | None
    status: str
    salience: float | None
    created_at: UtcDatetime
    last_updated_ts: UtcDatetime
    community_id: str | None
    merged_into_concept_id: str | None
    metadata: JsonObject

    @property
    def normalized_name(self) -> str | None:
        value = (self.metadata or {}).get("normalized_name")
        return value if isinstance(value, str) else None

    @property
    def aliases(self) -> list[str]:
        value = (self.metadata or {}).get("aliases")
        return [alias for alias in value if isinstance(alias, str)] if isinstance(value, list) else []


_MATCHES_NAME = (
    "(metadata->>'normalized_name' = $2 OR (jsonb_typeof(metadata->'aliases') = 'array' AND metadata->'aliases' ? $2))"
)


async def find_concept(db: Executor, user_id: str, *, normalized_name: str, type: str) -> ConceptRecord | None:
    """The active concept of this type whose normalized name or one of whose aliases is `normalized_name`."""
    row = await db.fetchrow(
        f"SELECT * FROM concepts WHERE user_id = $1 AND type = $3 AND status = 'active' AND {_MATCHES_NAME} "
        "ORDER BY created_at, concept_id LIMIT 1",
        user_id, normalized_name, type,
    )  # fmt: skip
    return ConceptRecord.from_optional(row)


async def create_concept(
    db: Executor,
    user_id: str,
    *,
    name: str,
    type: str,
    description: str | None,
    normalized_name: str,
    concept_id: str | None = None,
) -> ConceptRecord:
    """The concept for this normalized name and type: an existing match, or a new row.

    Never fails on and never duplicates a racing insert: racers for the same normalized name take turns on an
    advisory lock, and the insert is ON CONFLICT (user_id, name, type) DO UPDATE, which returns a row of the same
    surface name (filling its normalized name when the web app created it without one).
    """
    async with serialized(db, f"concept:{user_id}:{type}:{normalized_name}") as conn:
        found = await find_concept(conn, user_id, normalized_name=normalized_name, type=type)
        if found is not None:
            return found
        now = to_db(utc_now())
        row = await conn.fetchrow(
            "INSERT INTO concepts (concept_id, user_id, name, type, description, status, created_at, "
            "last_updated_ts, metadata) VALUES ($1, $2, $3, $4, $5, 'active', $6, $6, $7) "
            "ON CONFLICT (user_id, name, type) DO UPDATE SET last_updated_ts = EXCLUDED.last_updated_ts, "
            "description = COALESCE(concepts.description, EXCLUDED.description), "
            "metadata = CASE WHEN jsonb_typeof(concepts.metadata) = 'object' "
            "AND concepts.metadata ? 'normalized_name' THEN concepts.metadata ELSE EXCLUDED.metadata END "
            "RETURNING *",
            concept_id or new_id(), user_id, name, type, description, now,
            {"normalized_name": normalized_name, "aliases": []},
        )  # fmt: skip
        concept = ConceptRecord.from_row(row)
        if concept.status == "merged" and concept.merged_into_concept_id is not None:
            # the surface name belongs to a concept merged away: its successor is the concept meant
            successor = await get_concept(conn, user_id, concept.merged_into_concept_id)
            if successor is not None and successor.status == "active":
                return successor
        return concept


async def _update_one(db: Executor, user_id: str, concept_id: str, assignments: str, *args: Any) -> None:
    """`UPDATE concepts SET <assignments>, last_updated_ts = now` (@updatedAt) for one of the user's concepts."""
    now_param = f"${len(args) + 3}"
    status = await db.execute(
        f"UPDATE concepts SET {assignments}, last_updated_ts = {now_param} WHERE user_id = $1 AND concept_id = $2",
        user_id, concept_id, *args, to_db(utc_now()),
    )  # fmt: skip
    if row_count(status) == 0:
        raise NotFoundError(f"concept {concept_id} not found for user {user_id}")


async def add_concept_alias(db: Executor, user_id: str, concept_id: str, alias_normalized: str) -> None:
    """Remember another normalized name for the concept (no-op when it is already its name or an alias)."""
    await _update_one(
        db, user_id, concept_id,
        "metadata = CASE "
        "WHEN metadata->>'normalized_name' = $3 "
        "OR (jsonb_typeof(metadata->'aliases') = 'array' AND metadata->'aliases' ? $3) THEN metadata "
        "ELSE jsonb_set(CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{}'::jsonb END, '{aliases}', "
        "CASE WHEN jsonb_typeof(metadata->'aliases') = 'array' THEN metadata->'aliases' ELSE '[]'::jsonb END "
        "|| jsonb_build_array($3::text)) END",
        alias_normalized,
    )  # fmt: skip


async def touch_concept(db: Executor, user_id: str, concept_id: str, *, description: str | None = None) -> None:
    """Mark the concept as seen again; `description` only fills an empty one (the first description stays)."""
    await _update_one(
        db, user_id, concept_id, "description = COALESCE(NULLIF(btrim(description), ''), $3::text, description)",
        description,
    )  # fmt: skip


async def get_concept(db: Executor, user_id: str, concept_id: str) -> ConceptRecord | None:
    row = await db.fetchrow("SELECT * FROM concepts WHERE user_id = $1 AND concept_id = $2", user_id, concept_id)
    return ConceptRecord.from_optional(row)


async def list_concepts(db: Executor, user_id: str, *, status: str | None = "active") -> list[ConceptRecord]:
    """The user's concepts by name; every status when `status` is None."""
    rows = await db.fetch(
        "SELECT * FROM concepts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY name, type",
        user_id, status,
    )  # fmt: skip
    return [ConceptRecord.from_row(row) for row in rows]


async def list_relevant_concepts(db: Executor, user_id: str, *, limit: int = 50) -> list[ConceptRecord]:
    """The active concepts an agent should see first: most salient, then most recently updated."""
    rows = await db.fetch(
        "SELECT * FROM concepts WHERE user_id = $1 AND status = 'active' "
        "ORDER BY salience DESC NULLS LAST, last_updated_ts DESC, concept_id LIMIT $2",
        user_id, limit,
    )  # fmt: skip
    return [ConceptRecord.from_row(row) for row in rows]
