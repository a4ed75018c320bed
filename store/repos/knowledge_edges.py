"""runtime.knowledge_edges: relationships between memory units and concepts (migration 0004).

The Prisma schema has no model for them, so they live in the runtime schema; Postgres is their truth and the
graph store is rebuilt from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.vocabulary import NodeLabel, StructuralRelationshipType
from store.postgres import Executor
from store.repos._base import Record, Write, apply, new_id, row_count


class KnowledgeEdgeRecord(Record):
    edge_id: str
    user_id: str
    source_id: str
    source_type: str
    target_id: str
    target_type: str
    relationship_type: str
    strength: float
    description: str | None
    source_conversation_id: str | None
    created_at: datetime  # TIMESTAMPTZ: already aware
    updated_at: datetime


class NewEdge(BaseModel):
    """One edge for `upsert_edges`."""

    source_id: str
    source_type: str
    target_id: str
    target_type: str
    relationship_type: str
    strength: float
    description: str | None
    source_conversation_id: str | None
    edge_id: str | None = None


async def upsert_edges(db: Executor, user_id: str, edges: Sequence[NewEdge]) -> None:
    """Insert the edges in one statement; an edge the user already has keeps its id and source conversation (ids in
    the graph store stay stable), the stronger strength and the newer description."""
    await apply(db, upserting(user_id, edges))


def upserting(user_id: str, edges: Sequence[NewEdge]) -> Write | None:
    """`upsert_edges` as a Write, to send with others (None: no edges).

    One statement cannot change a row twice, so edges repeated in `edges` (the same ends and type) are merged first,
    as inserting them one after the other would: the first one's id, the stronger strength, the last description."""
    merged: dict[tuple[str, str, str], NewEdge] = {}
    for edge in edges:
        key = (edge.source_id, edge.relationship_type, edge.target_id)
        earlier = merged.get(key)
        merged[key] = (
            edge.model_copy(update={"edge_id": edge.edge_id or new_id()})
            if earlier is None
            else earlier.model_copy(
                update={
                    "strength": max(earlier.strength, edge.strength),
                    "description": edge.description if edge.description is not None else earlier.description,
                }
            )
        )
    if not merged:
        return None
    rows = list(merged.values())
    return Write(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength, description, source_conversation_id) "
        "SELECT e.edge_id, $1, e.source_id, e.source_type, e.target_id, e.target_type, e.relationship_type, "
        "e.strength, e.description, e.source_conversation_id "
        "FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], "
        "$9::text[], $10::text[]) AS e(edge_id, source_id, source_type, target_id, target_type, relationship_type, "
        "strength, description, source_conversation_id) "
        "ON CONFLICT ON CONSTRAINT knowledge_edges_unique DO UPDATE SET "
        "strength = GREATEST(knowledge_edges.strength, EXCLUDED.strength), "
        "description = COALESCE(EXCLUDED.description, knowledge_edges.description), updated_at = now()",
        (
            user_id,
            [e.edge_id for e in rows],
            [e.source_id for e in rows],
            [e.source_type for e in rows],
            [e.target_id for e in rows],
            [e.target_type for e in rows],
            [e.relationship_type for e in rows],
            [e.strength for e in rows],
            [e.description for e in rows],
            [e.source_conversation_id for e in rows],
        ),
    )


async def delete_edges_from_conversation(db: Executor, user_id: str, conversation_id: str) -> int:
    result = await db.execute(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND source_conversation_id = $2",
        user_id,
        conversation_id,
    )
    return row_count(result)


_NODE = {"MemoryUnit": NodeLabel.MEMORY_UNIT, "Concept": NodeLabel.CONCEPT}
_STRUCTURAL = [kind.value for kind in StructuralRelationshipType]


async def delete_edges_touching(db: Executor, user_id: str, entity_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Delete the user's truth rows with one of these entities at either end (a memory unit the user asked to
    forget); returns the other ends as (type, id), for the outbox."""
    rows = await db.fetch(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type <> ALL($3::text[]) "
        "AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[])) "
        "RETURNING source_type, source_id, target_type, target_id",
        user_id,
        list(entity_ids),
        _STRUCTURAL,
    )
    gone = set(entity_ids)
    ends = {(row[f"{end}_type"], row[f"{end}_id"]) for row in rows for end in ("source", "target")}
    return sorted(end for end in ends if end[1] not in gone)


async def repoint_edges(
    db: Executor, user_id: str, primary_id: str, gone: Sequence[str]
) -> tuple[int, set[tuple[NodeLabel, str]]]:
    """Repoint the truth rows touching the merged concepts `gone` at `primary_id`, in two statements: delete them,
    insert them back remapped (one per relationship: the stronger wins; a link between two merged concepts goes).
    Moved rows leave the embedded graph (in_graph false) until the outbox dispatcher applies them. Returns how many
    rows touched the merged concepts, and the entities at both ends of them (for the outbox)."""
    rows = await db.fetch(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type <> ALL($3::text[]) "
        "AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[])) RETURNING *",
        user_id,
        list(gone),
        _STRUCTURAL,
    )
    merged = set(gone)
    moved: dict[tuple[str, str, str], Any] = {}
    targets: dict[tuple[str, str, str], tuple[str, str]] = {}
    ends: set[tuple[NodeLabel, str]] = set()
    for row in sorted(rows, key=lambda r: (-r["strength"], r["edge_id"])):
        source = primary_id if row["source_id"] in merged else row["source_id"]
        target = primary_id if row["target_id"] in merged else row["target_id"]
        for kind, entity in ((row["source_type"], row["source_id"]), (row["target_type"], row["target_id"])):
            if kind in _NODE and entity not in merged:
                ends.add((_NODE[kind], entity))
        key = (source, row["relationship_type"], target)
        if source != target and key not in moved:
            moved[key], targets[key] = row, (source, target)
    await db.executemany(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength, description, source_conversation_id, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT ON CONSTRAINT knowledge_edges_unique "
        "DO UPDATE SET strength = GREATEST(knowledge_edges.strength, EXCLUDED.strength), "
        "description = COALESCE(knowledge_edges.description, EXCLUDED.description), updated_at = now(), "
        "in_graph = false",
        [
            (
                row["edge_id"],
                user_id,
                targets[key][0],
                row["source_type"],
                targets[key][1],
                row["target_type"],
                row["relationship_type"],
                row["strength"],
                row["description"],
                row["source_conversation_id"],
                row["created_at"],
            )
            for key, row in moved.items()
        ],
    )
    return len(rows), ends
