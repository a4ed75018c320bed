"""public.communities: clusters of the user's concepts found by the insight cycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    NotFoundError,
    Record,
    TextArray,
    UtcDatetime,
    json_object,
    new_id,
    row_count,
    to_db,
    utc_now,
)

_OWNS_CONCEPTS = (
    "(SELECT count(*) FROM concepts WHERE user_id = $2 AND concept_id = ANY($5::text[])) "
    "= cardinality(ARRAY(SELECT DISTINCT unnest($5::text[])))"
)


class CommunityRecord(Record):
    community_id: str
    user_id: str
    name: str
    description: str | None
    core_concept_ids: TextArray
    detection_method: str | None
    created_at: UtcDatetime
    last_analyzed_ts: UtcDatetime | None
    metadata: JsonObject


async def create_community(
    db: Executor,
    user_id: str,
    *,
    name: str,
    description: str | None = None,
    core_concept_ids: Sequence[str] = (),
    detection_method: str | None = None,
    metadata: dict[str, Any] | None = None,
    community_id: str | None = None,
) -> CommunityRecord:
    """Insert a community; NotFoundError when a core concept is not this user's."""
    now = to_db(utc_now())
    row = await db.fetchrow(
        "INSERT INTO communities (community_id, user_id, name, description, core_concept_ids, detection_method, "
        f"created_at, last_analyzed_ts, metadata) SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8 WHERE {_OWNS_CONCEPTS} "
        "RETURNING *",
        community_id or new_id(),
        user_id,
        name,
        description,
        list(core_concept_ids),
        detection_method,
        now,
        json_object(metadata, "metadata"),
    )
    if row is None:
        raise NotFoundError(f"a core concept of community {name!r} is not found for user {user_id}")
    return CommunityRecord.from_row(row)


async def get_community(db: Executor, user_id: str, community_id: str) -> CommunityRecord | None:
    row = await db.fetchrow("SELECT * FROM communities WHERE user_id = $1 AND community_id = $2", user_id, community_id)
    return CommunityRecord.from_optional(row)


async def list_communities(db: Executor, user_id: str) -> list[CommunityRecord]:
    rows = await db.fetch("SELECT * FROM communities WHERE user_id = $1 ORDER BY name, community_id", user_id)
    return [CommunityRecord.from_row(row) for row in rows]


async def update_community(
    db: Executor,
    user_id: str,
    community_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    core_concept_ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Replace the given fields (None keeps a field) after a new analysis; last_analyzed_ts is @updatedAt."""
    result = await db.execute(
        "UPDATE communities SET name = COALESCE($3, name), description = COALESCE($4, description), "
        "core_concept_ids = COALESCE($5::text[], core_concept_ids), metadata = COALESCE($6, metadata), "
        f"last_analyzed_ts = $7 WHERE user_id = $2 AND community_id = $1 AND ($5::text[] IS NULL OR {_OWNS_CONCEPTS})",
        community_id,
        user_id,
        name,
        description,
        None if core_concept_ids is None else list(core_concept_ids),
        json_object(metadata, "metadata"),
        to_db(utc_now()),
    )
    if row_count(result) == 0:
        raise NotFoundError(f"community {community_id} (or one of its core concepts) not found for user {user_id}")


async def delete_community(db: Executor, user_id: str, community_id: str) -> bool:
    """Delete the community; its concepts stay (their community_id is set to NULL by the foreign key)."""
    result = await db.execute("DELETE FROM communities WHERE user_id = $1 AND community_id = $2", user_id, community_id)
    return row_count(result) == 1
