"""runtime.knowledge_edges: relationships between memory units and concepts (migration 0004).

The Prisma schema has no model for them, so they live in the runtime schema; Postgres is their truth and the
graph store is rebuilt from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import Record, new_id, row_count


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


_UPSERT = (
    "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
    "relationship_type, strength, description, source_conversation_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT ON CONSTRAINT knowledge_edges_unique DO UPDATE SET "
    "strength = GREATEST(knowledge_edges.strength, EXCLUDED.strength), "
    "description = COALESCE(EXCLUDED.description, knowledge_edges.description), updated_at = now()"
)


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


async def upsert_edges(db: Executor, user_id: str, edges: Sequence[NewEdge]) -> None:
    """`upsert_edge` for several edges in one pipelined round trip."""
    await db.executemany(
        _UPSERT,
        [
            (
                new_id(),
                user_id,
                e.source_id,
                e.source_type,
                e.target_id,
                e.target_type,
                e.relationship_type,
                e.strength,
                e.description,
                e.source_conversation_id,
            )
            for e in edges
        ],
    )


async def upsert_edge(
    db: Executor,
    user_id: str,
    *,
    source_id: str,
    source_type: str,
    target_id: str,
    target_type: str,
    relationship_type: str,
    strength: float,
    description: str | None,
    source_conversation_id: str | None,
    edge_id: str | None = None,
) -> KnowledgeEdgeRecord:
    """Insert the edge or, when the user already has it, keep the stronger strength and the newer description.

    The existing edge keeps its id and source conversation: ids in the graph store stay stable.
    """
    row = await db.fetchrow(
        _UPSERT + " RETURNING *",
        edge_id or new_id(),
        user_id,
        source_id,
        source_type,
        target_id,
        target_type,
        relationship_type,
        strength,
        description,
        source_conversation_id,
    )
    return KnowledgeEdgeRecord.from_row(row)


async def list_edges(
    db: Executor, user_id: str, *, source_conversation_id: str | None = None
) -> list[KnowledgeEdgeRecord]:
    rows = await db.fetch(
        "SELECT * FROM runtime.knowledge_edges WHERE user_id = $1 "
        "AND ($2::text IS NULL OR source_conversation_id = $2) ORDER BY created_at, edge_id",
        user_id,
        source_conversation_id,
    )
    return [KnowledgeEdgeRecord.from_row(row) for row in rows]


async def delete_edges_from_conversation(db: Executor, user_id: str, conversation_id: str) -> int:
    result = await db.execute(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND source_conversation_id = $2",
        user_id,
        conversation_id,
    )
    return row_count(result)


async def delete_edges_touching(db: Executor, user_id: str, entity_ids: Sequence[str]) -> int:
    """Delete every edge of the user that starts or ends at one of these entities."""
    result = await db.execute(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 "
        "AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[]))",
        user_id,
        list(entity_ids),
    )
    return row_count(result)
