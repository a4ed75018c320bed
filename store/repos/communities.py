"""public.communities: clusters of the user's concepts found by the insight cycle."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import (
    JsonObject,
    Record,
    TextArray,
    UtcDatetime,
    row_count,
    to_db,
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


async def list_communities(db: Executor, user_id: str) -> list[CommunityRecord]:
    rows = await db.fetch("SELECT * FROM communities WHERE user_id = $1 ORDER BY name, community_id", user_id)
    return [CommunityRecord.from_row(row) for row in rows]


class CommunityRow(BaseModel):
    """One community as the insight cycle writes it: members are the user's active concepts (checked by the
    caller in its transaction)."""

    community_id: str
    name: str
    description: str | None
    members: list[str]
    metadata: dict[str, Any]


_ROWS = "FROM jsonb_to_recordset($2::jsonb) AS r(id text, name text, description text, members jsonb, metadata jsonb)"
_MEMBERS = (
    "ARRAY(SELECT x FROM jsonb_array_elements_text(r.members) AS x "
    "WHERE EXISTS (SELECT 1 FROM concepts k WHERE k.concept_id = x AND k.user_id = $1))"
)
"""A community's members, only ever the user's own concepts."""


def _rows(communities: Sequence[CommunityRow]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.community_id,
            "name": c.name,
            "description": c.description,
            "members": c.members,
            "metadata": c.metadata,
        }
        for c in communities
    ]


async def insert_communities(
    db: Executor, user_id: str, communities: Sequence[CommunityRow], *, detection_method: str | None, at: datetime
) -> None:
    """New communities in one statement (a statement per kind of change, not per community: a large graph has
    thousands); one whose id exists already is left as it is."""
    if communities:
        await db.execute(
            "INSERT INTO communities (community_id, user_id, name, description, core_concept_ids, detection_method, "
            f"created_at, last_analyzed_ts, metadata) SELECT r.id, $1, r.name, r.description, {_MEMBERS}, $3, $4, "
            f"$4, r.metadata {_ROWS} ON CONFLICT (community_id) DO NOTHING",
            user_id,
            _rows(communities),
            detection_method,
            to_db(at),
        )


async def update_communities(
    db: Executor, user_id: str, communities: Sequence[CommunityRow], *, detection_method: str | None, at: datetime
) -> None:
    """Communities found again, updated in place (name, members, analysis) in one statement."""
    if communities:
        await db.execute(
            f"UPDATE communities c SET name = r.name, description = r.description, core_concept_ids = {_MEMBERS}, "
            f"detection_method = $3, metadata = r.metadata, last_analyzed_ts = $4 {_ROWS} "
            "WHERE c.user_id = $1 AND c.community_id = r.id",
            user_id,
            _rows(communities),
            detection_method,
            to_db(at),
        )


async def delete_communities(db: Executor, user_id: str, community_ids: Sequence[str]) -> int:
    """Delete these communities; their concepts stay (their community_id is set to NULL by the foreign key, so
    regroup them first to tell the stores)."""
    status = await db.execute(
        "DELETE FROM communities WHERE user_id = $1 AND community_id = ANY($2::text[])", user_id, list(community_ids)
    )
    return row_count(status)


async def repoint_members(db: Executor, user_id: str, primary_id: str, gone: Sequence[str]) -> list[str]:
    """After a merge: the communities listing a merged concept list the concept kept instead (once); returns them."""
    rows = await db.fetch(
        "UPDATE communities SET core_concept_ids = ARRAY(SELECT DISTINCT CASE WHEN x = ANY($3::text[]) THEN $2 "
        "ELSE x END FROM unnest(core_concept_ids) AS x ORDER BY 1) "
        "WHERE user_id = $1 AND core_concept_ids && $3::text[] RETURNING community_id",
        user_id,
        primary_id,
        list(gone),
    )
    return sorted(row["community_id"] for row in rows)
