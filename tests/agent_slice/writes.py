"""The slice's writes: what a shipped slice keeps in store/<name>_writes.py. One transaction: the note's title as a
derived artifact (through its repository, the one write path of that table) and its outbox row, so the graph and
vector stores follow. Idempotent: the artifact's id derives from the note, and a second write inserts nothing."""

from __future__ import annotations

import uuid

from core.vocabulary import NodeLabel
from store import outbox
from store.postgres import Executor
from store.repos import derived_artifacts
from store.repos._base import transaction
from store.repos.derived_artifacts import NewArtifact
from tests.agent_slice.agent import NoteOutput

GENERATED_BY = "NoteAgent"
NOTE_NAMESPACE = uuid.UUID("0b3f6f1e-9d1a-4c52-8a77-5e2c4f1d9a60")


def note_artifact_id(user_id: str, note_id: str) -> str:
    return str(uuid.uuid5(NOTE_NAMESPACE, f"{user_id}:note:{note_id}"))


async def write_note(db: Executor, user_id: str, note_id: str, note: NoteOutput) -> bool:
    """Keep the note once; False when an earlier run kept it already."""
    artifact = NewArtifact(
        artifact_id=note_artifact_id(user_id, note_id),
        artifact_type="note_title",
        title=note.title,
        content_narrative=None,
        content_data={"note_id": note_id, "mood": note.mood, "tags": note.tags},
    )
    async with transaction(db) as conn:
        inserted = await derived_artifacts.insert_artifacts(conn, user_id, [artifact], generated_by=GENERATED_BY)
        changed = outbox.changes(NodeLabel.DERIVED_ARTIFACT, (a.artifact_id for a in inserted))
        await outbox.record_changes(conn, user_id, changed)  # the graph and vector stores follow this commit
    return bool(inserted)
