"""public.derived_artifacts: insight summaries, cycle reports and trophies the batch agents write."""

from __future__ import annotations

from collections.abc import Sequence
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


class DerivedArtifactRecord(Record):
    artifact_id: str
    user_id: str
    artifact_type: str
    title: str
    content_narrative: str | None
    content_data: JsonObject
    source_memory_unit_id: str | None
    source_concept_id: str | None
    generated_by_agent: str | None
    created_at: UtcDatetime


async def create_derived_artifact(
    db: Executor,
    user_id: str,
    *,
    artifact_type: str,
    title: str,
    content_narrative: str | None = None,
    content_data: dict[str, Any] | None = None,
    source_memory_unit_id: str | None = None,
    source_concept_id: str | None = None,
    generated_by_agent: str | None = None,
    artifact_id: str | None = None,
) -> DerivedArtifactRecord:
    """Insert an artifact; NotFoundError when a source memory unit or concept is not this user's."""
    row = await db.fetchrow(
        "INSERT INTO derived_artifacts (artifact_id, user_id, artifact_type, title, content_narrative, content_data, "
        "source_memory_unit_id, source_concept_id, generated_by_agent, created_at) "
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 "
        "WHERE ($7::text IS NULL OR EXISTS (SELECT 1 FROM memory_units WHERE muid = $7 AND user_id = $2)) "
        "AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM concepts WHERE concept_id = $8 AND user_id = $2)) "
        "RETURNING *",
        artifact_id or new_id(),
        user_id,
        artifact_type,
        title,
        content_narrative,
        json_object(content_data, "content_data"),
        source_memory_unit_id,
        source_concept_id,
        generated_by_agent,
        to_db(utc_now()),
    )
    if row is None:
        raise NotFoundError(
            f"source memory unit {source_memory_unit_id} or concept {source_concept_id} not found for user {user_id}"
        )
    return DerivedArtifactRecord.from_row(row)


async def get_derived_artifact(db: Executor, user_id: str, artifact_id: str) -> DerivedArtifactRecord | None:
    row = await db.fetchrow(
        "SELECT * FROM derived_artifacts WHERE user_id = $1 AND artifact_id = $2", user_id, artifact_id
    )
    return DerivedArtifactRecord.from_optional(row)


async def list_derived_artifacts(
    db: Executor, user_id: str, *, artifact_type: str | None = None
) -> list[DerivedArtifactRecord]:
    rows = await db.fetch(
        "SELECT * FROM derived_artifacts WHERE user_id = $1 AND ($2::text IS NULL OR artifact_type = $2) "
        "ORDER BY created_at, artifact_id",
        user_id,
        artifact_type,
    )
    return [DerivedArtifactRecord.from_row(row) for row in rows]


async def delete_derived_artifact(db: Executor, user_id: str, artifact_id: str) -> bool:
    result = await db.execute(
        "DELETE FROM derived_artifacts WHERE user_id = $1 AND artifact_id = $2", user_id, artifact_id
    )
    return row_count(result) == 1


async def drop_memory_unit_sources(db: Executor, user_id: str, muids: Sequence[str]) -> list[str]:
    """Take these memory units (about to be deleted) out of the user's artifacts' sources: out of
    `content_data.source_memory_unit_ids`, and `source_memory_unit_id` becomes the first source left (or NULL).
    Returns the artifacts changed, for the outbox: without this the foreign key would null the column silently and
    the derived stores would keep the old source (issue 18 defect 4)."""
    rows = await db.fetch(
        """
        UPDATE derived_artifacts SET
            source_memory_unit_id = CASE WHEN source_memory_unit_id = ANY($2::text[]) THEN (
                SELECT x FROM jsonb_array_elements_text(CASE
                    WHEN jsonb_typeof(content_data->'source_memory_unit_ids') = 'array'
                    THEN content_data->'source_memory_unit_ids' ELSE '[]'::jsonb END) WITH ORDINALITY AS t(x, n)
                WHERE x <> ALL($2::text[])
                    AND EXISTS (SELECT 1 FROM memory_units m WHERE m.muid = x AND m.user_id = $1)
                ORDER BY n LIMIT 1) ELSE source_memory_unit_id END,
            content_data = CASE WHEN jsonb_typeof(content_data->'source_memory_unit_ids') = 'array' THEN jsonb_set(
                content_data, '{source_memory_unit_ids}', (SELECT COALESCE(jsonb_agg(x ORDER BY n), '[]'::jsonb)
                    FROM jsonb_array_elements_text(content_data->'source_memory_unit_ids') WITH ORDINALITY AS t(x, n)
                    WHERE x <> ALL($2::text[])))
                ELSE content_data END
        WHERE user_id = $1 AND (source_memory_unit_id = ANY($2::text[])
            OR (jsonb_typeof(content_data->'source_memory_unit_ids') = 'array'
                AND content_data->'source_memory_unit_ids' ?| $2::text[]))
        RETURNING artifact_id
        """,
        user_id,
        list(muids),
    )
    return sorted(row["artifact_id"] for row in rows)
