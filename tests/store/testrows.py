"""Rows for tests: one row of a table seeded through the production write path (the repositories' bulk functions,
docs/store.md "One write path per table"), and rows read back by id for assertions.

Orrery itself never reads one artifact by id or writes one memory unit alone, so these live with the tests rather
than as repository functions nobody else calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from store.postgres import Executor
from store.repos import (
    communities,
    derived_artifacts,
    graph_projections,
    growth_events,
    interaction_logs,
    knowledge_edges,
    memory_units,
    proactive_prompts,
)
from store.repos._base import new_id, to_db, utc_now
from store.repos.cards import CardRecord
from store.repos.communities import CommunityRecord, CommunityRow
from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import DerivedArtifactRecord, NewArtifact
from store.repos.graph_projections import GraphProjectionRecord
from store.repos.growth_events import GrowthEventRecord, NewGrowthEvent
from store.repos.interaction_logs import NewInteraction
from store.repos.knowledge_edges import KnowledgeEdgeRecord, NewEdge
from store.repos.memory_units import MemoryUnitRecord, NewMemoryUnit
from store.repos.proactive_prompts import NewPromptRow, ProactivePromptRecord
from store.sync import TRUTH_EDGE_TYPES

# --- read back ----------------------------------------------------------------------------------------------------


async def get_card(db: Executor, user_id: str, card_id: str) -> CardRecord | None:
    row = await db.fetchrow("SELECT * FROM cards WHERE user_id = $1 AND card_id = $2", user_id, card_id)
    return CardRecord.from_optional(row)


async def get_concept(db: Executor, user_id: str, concept_id: str) -> ConceptRecord | None:
    row = await db.fetchrow("SELECT * FROM concepts WHERE user_id = $1 AND concept_id = $2", user_id, concept_id)
    return ConceptRecord.from_optional(row)


async def get_community(db: Executor, user_id: str, community_id: str) -> CommunityRecord | None:
    row = await db.fetchrow("SELECT * FROM communities WHERE user_id = $1 AND community_id = $2", user_id, community_id)
    return CommunityRecord.from_optional(row)


async def get_derived_artifact(db: Executor, user_id: str, artifact_id: str) -> DerivedArtifactRecord | None:
    row = await db.fetchrow(
        "SELECT * FROM derived_artifacts WHERE user_id = $1 AND artifact_id = $2", user_id, artifact_id
    )
    return DerivedArtifactRecord.from_optional(row)


async def get_memory_unit(db: Executor, user_id: str, muid: str) -> MemoryUnitRecord | None:
    row = await db.fetchrow("SELECT * FROM memory_units WHERE user_id = $1 AND muid = $2", user_id, muid)
    return MemoryUnitRecord.from_optional(row)


async def get_proactive_prompt(db: Executor, user_id: str, prompt_id: str) -> ProactivePromptRecord | None:
    row = await db.fetchrow("SELECT * FROM proactive_prompts WHERE user_id = $1 AND prompt_id = $2", user_id, prompt_id)
    return ProactivePromptRecord.from_optional(row)


async def get_graph_projection(db: Executor, user_id: str, projection_id: str) -> GraphProjectionRecord | None:
    row = await db.fetchrow(
        "SELECT * FROM user_graph_projections WHERE user_id = $1 AND projection_id = $2", user_id, projection_id
    )
    return GraphProjectionRecord.from_optional(row)


async def list_graph_projections(db: Executor, user_id: str) -> list[GraphProjectionRecord]:
    """Newest first."""
    rows = await db.fetch(
        "SELECT * FROM user_graph_projections WHERE user_id = $1 ORDER BY created_at DESC, projection_id DESC",
        user_id,
    )
    return [GraphProjectionRecord.from_row(row) for row in rows]


async def list_growth_events(db: Executor, user_id: str, *, entity_id: str | None = None) -> list[GrowthEventRecord]:
    rows = await db.fetch(
        "SELECT * FROM growth_events WHERE user_id = $1 AND ($2::text IS NULL OR entity_id = $2) "
        "ORDER BY created_at, event_id",
        user_id,
        entity_id,
    )
    return [GrowthEventRecord.from_row(row) for row in rows]


async def list_edges(
    db: Executor, user_id: str, *, source_conversation_id: str | None = None
) -> list[KnowledgeEdgeRecord]:
    """The truth rows (the extracted vocabulary): the embedded graph keeps its structural rows (AUTHORED_BY, MENTIONS,
    ...) in the same table, and they follow the graph's sync, not the write under test."""
    rows = await db.fetch(
        "SELECT * FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type = ANY($3::text[]) "
        "AND ($2::text IS NULL OR source_conversation_id = $2) ORDER BY created_at, edge_id",
        user_id,
        source_conversation_id,
        TRUTH_EDGE_TYPES,
    )
    return [KnowledgeEdgeRecord.from_row(row) for row in rows]


# --- seed one row through the production path ------------------------------------------------------------------


async def create_concept(
    db: Executor,
    user_id: str,
    *,
    name: str,
    type: str,
    description: str | None = None,
    normalized_name: str,
    concept_id: str | None = None,
) -> ConceptRecord:
    """A new active concept with a chosen id (ingestion's ensure_concepts picks its own: a fixture wants to name it)."""
    now = to_db(utc_now())
    row = await db.fetchrow(
        "INSERT INTO concepts (concept_id, user_id, name, type, description, status, created_at, last_updated_ts, "
        "metadata) VALUES ($1, $2, $3, $4, $5, 'active', $6, $6, $7) RETURNING *",
        concept_id or new_id(),
        user_id,
        name,
        type,
        description,
        now,
        {"normalized_name": normalized_name, "aliases": []},
    )
    return ConceptRecord.from_row(row)


async def insert_memory_unit(
    db: Executor,
    user_id: str,
    *,
    title: str,
    content: str,
    creation_ts: datetime,
    importance_score: float | None,
    sentiment_score: float | None,
    source_conversation_id: str | None,
    metadata: dict[str, Any] | None = None,
    muid: str | None = None,
    ingestion_ts: datetime | None = None,
) -> MemoryUnitRecord:
    """A memory unit as ingestion writes one; `ingestion_ts` (default: now) places it in a cycle's window."""
    unit = NewMemoryUnit(
        muid=muid or new_id(),
        title=title,
        content=content,
        creation_ts=creation_ts,
        importance_score=importance_score,
        sentiment_score=sentiment_score,
        source_conversation_id=source_conversation_id,
        metadata=metadata,
    )
    await memory_units.insert_memory_units(db, user_id, [unit])
    if ingestion_ts is not None:
        await db.execute(
            "UPDATE memory_units SET ingestion_ts = $3 WHERE user_id = $1 AND muid = $2",
            user_id,
            unit.muid,
            to_db(ingestion_ts),
        )
    found = await get_memory_unit(db, user_id, unit.muid or "")
    assert found is not None
    return found


async def upsert_edge(db: Executor, user_id: str, **fields: Any) -> KnowledgeEdgeRecord:
    edge = NewEdge(**fields)
    await knowledge_edges.upsert_edges(db, user_id, [edge])
    row = await db.fetchrow(
        "SELECT * FROM runtime.knowledge_edges WHERE user_id = $1 AND source_id = $2 AND target_id = $3 "
        "AND relationship_type = $4",
        user_id,
        edge.source_id,
        edge.target_id,
        edge.relationship_type,
    )
    return KnowledgeEdgeRecord.from_row(row)


async def insert_growth_event(db: Executor, user_id: str, **fields: Any) -> GrowthEventRecord:
    event = NewGrowthEvent(**{"event_id": new_id(), **fields})
    await growth_events.insert_growth_events(db, user_id, [event])
    row = await db.fetchrow("SELECT * FROM growth_events WHERE event_id = $1", event.event_id)
    return GrowthEventRecord.from_row(row)


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
    generated_by_agent: str = "test",
    artifact_id: str | None = None,
) -> DerivedArtifactRecord:
    artifact = NewArtifact(
        artifact_id=artifact_id or new_id(),
        artifact_type=artifact_type,
        title=title,
        content_narrative=content_narrative,
        content_data=content_data,
        source_memory_unit_id=source_memory_unit_id,
        source_concept_id=source_concept_id,
    )
    [row] = await derived_artifacts.insert_artifacts(db, user_id, [artifact], generated_by=generated_by_agent)
    return row


async def create_community(
    db: Executor,
    user_id: str,
    *,
    name: str,
    core_concept_ids: Sequence[str] = (),
    description: str | None = None,
    detection_method: str | None = None,
    metadata: dict[str, Any] | None = None,
    community_id: str | None = None,
) -> CommunityRecord:
    row = CommunityRow(
        community_id=community_id or new_id(),
        name=name,
        description=description,
        members=list(core_concept_ids),
        metadata=metadata or {},
    )
    await communities.insert_communities(db, user_id, [row], detection_method=detection_method, at=utc_now())
    found = await get_community(db, user_id, row.community_id)
    assert found is not None
    return found


async def create_proactive_prompt(
    db: Executor,
    user_id: str,
    *,
    prompt_text: str,
    source_agent: str,
    priority: int = 5,
    metadata: dict[str, Any] | None = None,
    prompt_id: str | None = None,
) -> ProactivePromptRecord:
    row = NewPromptRow(
        prompt_id=prompt_id or new_id(),
        prompt_text=prompt_text,
        source_agent=source_agent,
        priority=priority,
        metadata=metadata or {},
    )
    await proactive_prompts.insert_prompts(db, user_id, [row])
    found = await get_proactive_prompt(db, user_id, row.prompt_id)
    assert found is not None
    return found


async def create_graph_projection(
    db: Executor, user_id: str, *, projection_data: dict[str, Any], projection_id: str | None = None
) -> GraphProjectionRecord:
    projection_id = projection_id or new_id()
    await graph_projections.insert_graph_projection(db, user_id, projection_id, projection_data)
    found = await get_graph_projection(db, user_id, projection_id)
    assert found is not None
    return found


async def write_interaction(
    db: Executor,
    user_id: str,
    interaction_type: str,
    *,
    text: str | None = None,
    target: tuple[str, str] | None = None,
    structured: Any = None,
    at: datetime | None = None,
) -> str:
    """An interaction_logs row as the web app writes one; returns its id. `target` is (entity type, entity id)."""
    row = NewInteraction(
        interaction_id=new_id(),
        interaction_type=interaction_type,
        timestamp=at or utc_now(),
        target_entity_type=target[0] if target else None,
        target_entity_id=target[1] if target else None,
        content_text=text,
        content_structured=structured,
    )
    assert await interaction_logs.insert_interactions(db, user_id, [row]) == 1
    return row.interaction_id
