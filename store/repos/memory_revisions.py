"""public.memory_revisions: the history of the user's memory units and concepts, one row per revision.

Each row keeps the values the revision replaced (`before`) and the ones it set (`after`), the kind (core/revisions.py:
retold, updated, corrected, forgotten, added), when, and why: the conversation or the user's interaction it came from.
Ids are derived from the user, the source and the entity (core.revisions.revision_id), so writing a source's
revisions again (a duplicate delivery, a reprocess) finds the rows it wrote instead of adding others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.revisions import RevisionKind, RevisionSource, revision_id
from core.vocabulary import EntityKind
from store.postgres import Executor
from store.repos._base import Record, RequiredJsonObject, UtcDatetime, to_db, utc_now


class MemoryRevisionRecord(Record):
    revision_id: str
    user_id: str
    entity_type: str
    entity_id: str
    kind: str
    before: RequiredJsonObject
    """The values the revision replaced ({} for none: a null column reads as empty)."""
    after: RequiredJsonObject
    source_conversation_id: str | None
    source_interaction_id: str | None
    created_at: UtcDatetime

    @property
    def source_key(self) -> str | None:
        """The source as core.revisions.RevisionSource.key spells it (None when the source row was deleted)."""
        if self.source_conversation_id is not None:
            return RevisionSource(conversation_id=self.source_conversation_id).key
        if self.source_interaction_id is not None:
            return RevisionSource(interaction_id=self.source_interaction_id).key
        return None


class NewRevision(BaseModel):
    """One revision for `upsert_revisions`; its id comes from the user, the source and the entity."""

    entity_type: EntityKind
    entity_id: str
    kind: RevisionKind
    source: RevisionSource
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)

    def revision_id(self, user_id: str) -> str:
        return revision_id(user_id, self.source, self.entity_type, self.entity_id)


async def upsert_revisions(
    db: Executor, user_id: str, revisions: Sequence[NewRevision], *, at: datetime | None = None
) -> list[str]:
    """Write the revisions in one statement; returns their ids. A row of the same id (the same source revising the
    same entity again) keeps its `before` and its time, the values it first replaced, and takes the new kind and
    `after`; another user's row of that id is never touched."""
    if not revisions:
        return []
    ids = [r.revision_id(user_id) for r in revisions]
    await db.execute(
        "INSERT INTO memory_revisions (revision_id, user_id, entity_type, entity_id, kind, before, after, "
        "source_conversation_id, source_interaction_id, created_at) "
        "SELECT r.revision_id, $1, r.entity_type, r.entity_id, r.kind, r.before::jsonb, r.after::jsonb, "
        "r.conversation_id, r.interaction_id, $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], "
        "$7::text[], $8::text[], $9::text[], $10::text[]) AS r(revision_id, entity_type, entity_id, kind, before, "
        "after, conversation_id, interaction_id) "
        "ON CONFLICT (revision_id) DO UPDATE SET kind = EXCLUDED.kind, after = EXCLUDED.after "
        "WHERE memory_revisions.user_id = EXCLUDED.user_id",
        user_id,
        to_db(at or utc_now()),
        ids,
        [r.entity_type.value for r in revisions],
        [r.entity_id for r in revisions],
        [r.kind.value for r in revisions],
        [json.dumps(r.before) for r in revisions],
        [json.dumps(r.after) for r in revisions],
        [r.source.conversation_id for r in revisions],
        [r.source.interaction_id for r in revisions],
    )
    return ids


async def revisions_from_conversation(db: Executor, user_id: str, conversation_id: str) -> list[MemoryRevisionRecord]:
    """The revisions a conversation made (what its reprocess undoes or leaves, store/ingestion_writes.py)."""
    rows = await db.fetch(
        "SELECT * FROM memory_revisions WHERE user_id = $1 AND source_conversation_id = $2 "
        "ORDER BY created_at, revision_id",
        user_id,
        conversation_id,
    )
    return [MemoryRevisionRecord.from_row(row) for row in rows]


async def revisions_of(db: Executor, user_id: str, entity_ids: Iterable[str]) -> list[MemoryRevisionRecord]:
    """Every revision of these entities, oldest first."""
    wanted = sorted(set(entity_ids))
    if not wanted:
        return []
    rows = await db.fetch(
        "SELECT * FROM memory_revisions WHERE user_id = $1 AND entity_id = ANY($2::text[]) "
        "ORDER BY created_at, revision_id",
        user_id,
        wanted,
    )
    return [MemoryRevisionRecord.from_row(row) for row in rows]


async def list_revisions(
    db: Executor, user_id: str, *, entity_id: str | None = None, limit: int = 200
) -> list[MemoryRevisionRecord]:
    """The user's history, newest first (one entity's only when given)."""
    rows = await db.fetch(
        "SELECT * FROM memory_revisions WHERE user_id = $1 AND ($2::text IS NULL OR entity_id = $2) "
        "ORDER BY created_at DESC, revision_id LIMIT $3",
        user_id,
        entity_id,
        limit,
    )
    return [MemoryRevisionRecord.from_row(row) for row in rows]


async def delete_revisions(db: Executor, user_id: str, revision_ids: Sequence[str]) -> list[str]:
    """Delete these of the user's revisions; returns the deleted ids (for the outbox)."""
    rows = await db.fetch(
        "DELETE FROM memory_revisions WHERE user_id = $1 AND revision_id = ANY($2::text[]) RETURNING revision_id",
        user_id,
        list(revision_ids),
    )
    return sorted(row["revision_id"] for row in rows)


async def delete_history(db: Executor, user_id: str, entity_ids: Sequence[str]) -> list[str]:
    """Delete every revision of these entities (a memory unit the user asked to forget takes its history with it);
    returns the deleted ids."""
    rows = await db.fetch(
        "DELETE FROM memory_revisions WHERE user_id = $1 AND entity_id = ANY($2::text[]) RETURNING revision_id",
        user_id,
        list(entity_ids),
    )
    return sorted(row["revision_id"] for row in rows)


async def forgotten_ids(db: Executor, user_id: str, entity_ids: Iterable[str]) -> set[str]:
    """Which of `entity_ids` the user asked to forget: a reprocess must not bring them back."""
    wanted = sorted(set(entity_ids))
    if not wanted:
        return set()
    rows = await db.fetch(
        "SELECT entity_id FROM memory_revisions WHERE user_id = $1 AND entity_id = ANY($2::text[]) AND kind = $3",
        user_id,
        wanted,
        RevisionKind.FORGOTTEN.value,
    )
    return {row["entity_id"] for row in rows}
