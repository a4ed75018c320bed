"""public.derived_artifacts: insight summaries, trophies, goal achievement stories and cycle reports the batch agents
write."""

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
    json_object,
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


class NewArtifact(BaseModel):
    """One artifact for `insert_artifacts`: its id derives from what it is about (a rerun finds it)."""

    artifact_id: str
    artifact_type: str
    title: str
    content_narrative: str | None
    content_data: dict[str, Any] | None
    source_memory_unit_id: str | None = None
    source_concept_id: str | None = None


async def insert_artifacts(
    db: Executor, user_id: str, artifacts: Sequence[NewArtifact], *, generated_by: str
) -> list[DerivedArtifactRecord]:
    """Insert the artifacts in one statement; one whose id exists already is left as it is. Returns those
    inserted. A source column naming a row that is not the user's is left empty (the caller keeps its lists of
    sources to what still exists)."""
    if not artifacts:
        return []
    rows = await db.fetch(
        "INSERT INTO derived_artifacts (artifact_id, user_id, artifact_type, title, content_narrative, content_data, "
        "source_memory_unit_id, source_concept_id, generated_by_agent, created_at) "
        "SELECT a.id, $1, a.type, a.title, a.narrative, a.data::jsonb, "
        "CASE WHEN EXISTS (SELECT 1 FROM memory_units m WHERE m.muid = a.unit AND m.user_id = $1) THEN a.unit END, "
        "CASE WHEN EXISTS (SELECT 1 FROM concepts c WHERE c.concept_id = a.concept AND c.user_id = $1) "
        "THEN a.concept END, $2, $3 "
        "FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) "
        "AS a(id, type, title, narrative, data, unit, concept) "
        "ON CONFLICT (artifact_id) DO NOTHING RETURNING *",
        user_id,
        generated_by,
        to_db(utc_now()),
        [a.artifact_id for a in artifacts],
        [a.artifact_type for a in artifacts],
        [a.title for a in artifacts],
        [a.content_narrative for a in artifacts],
        [
            None if a.content_data is None else json.dumps(json_object(a.content_data, "content_data"))
            for a in artifacts
        ],
        [a.source_memory_unit_id for a in artifacts],
        [a.source_concept_id for a in artifacts],
    )
    return [DerivedArtifactRecord.from_row(row) for row in rows]


async def artifact_exists(db: Executor, user_id: str, artifact_id: str) -> bool:
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM derived_artifacts WHERE user_id = $1 AND artifact_id = $2)", user_id, artifact_id
    )
    return bool(found)


async def concepts_with_artifact(
    db: Executor, user_id: str, artifact_type: str, concept_ids: Sequence[str]
) -> set[str]:
    """Which of these concepts an artifact of this type is about (source_concept_id): the goals whose story is told.
    By source column, which a concept merge repoints, so a story follows its goal into the concept kept."""
    rows = await db.fetch(
        "SELECT DISTINCT source_concept_id FROM derived_artifacts "
        "WHERE user_id = $1 AND artifact_type = $2 AND source_concept_id = ANY($3::text[])",
        user_id,
        artifact_type,
        list(concept_ids),
    )
    return {row["source_concept_id"] for row in rows}


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


async def repoint_concept_sources(db: Executor, user_id: str, primary_id: str, gone: Sequence[str]) -> list[str]:
    """After a merge: the artifacts citing the merged concepts cite the concept kept (column and content_data
    list, without repeats); returns the artifacts changed, for the outbox."""
    rows = await db.fetch(
        """
        UPDATE derived_artifacts SET
            source_concept_id = CASE WHEN source_concept_id = ANY($3::text[]) THEN $2 ELSE source_concept_id END,
            content_data = CASE WHEN jsonb_typeof(content_data->'source_concept_ids') = 'array' THEN jsonb_set(
                content_data, '{source_concept_ids}', (SELECT COALESCE(jsonb_agg(DISTINCT
                    CASE WHEN x = ANY($3::text[]) THEN $2 ELSE x END), '[]'::jsonb)
                    FROM jsonb_array_elements_text(content_data->'source_concept_ids') AS x))
                ELSE content_data END
        WHERE user_id = $1 AND (source_concept_id = ANY($3::text[])
            OR (jsonb_typeof(content_data->'source_concept_ids') = 'array'
                AND content_data->'source_concept_ids' ?| $3::text[]))
        RETURNING artifact_id
        """,
        user_id,
        primary_id,
        list(gone),
    )
    return sorted(row["artifact_id"] for row in rows)
