"""What the insight cycle reads: the cycle's material, and the concept graph for communities.

Why bounded this way: a user's history grows without end, a cycle does not. The material is driven by the memory
units the cycle learned (core/cycle.CycleWindow: by ingestion_ts), and everything else is reached from them by key
(their conversations by id, their concepts through runtime.knowledge_edges' indexes, growth events by entity), each
with a LIMIT. Two reads are the whole history: the concept graph for community detection (`load_concept_graph`),
by nature, timed apart in bench/bench_insight.py. The window's memory units come from the (user_id, ingestion_ts)
index (migration 0022). Every statement filters on the user id (DESIGN.md invariant 3).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.cycle import MEMORY_LEARNED_AT, Cycle
from core.insight import (
    ConceptDigest,
    ConceptLink,
    ConversationDigest,
    ExistingCommunity,
    GrowthTotal,
    InsightMaterial,
    MemoryDigest,
    summary_artifact_id,
)
from core.vocabulary import ArtifactType, GrowthDimension, RelationshipType, StructuralRelationshipType, is_goal_type
from store.graph.base import concept_weights
from store.postgres import Executor
from store.repos import communities, derived_artifacts
from store.repos._base import to_db

_STRUCTURAL = "(" + ", ".join(f"'{kind.value}'" for kind in StructuralRelationshipType) + ")"
"""Rows of runtime.knowledge_edges that the embedded graph keeps for itself (not the truth of a relationship)."""

WINDOW_CAP = 5000
"""Memory units of one window read at most: a week holds tens; this only stops a runaway import from making the
compile unbounded."""


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class MaterialLimits:
    """How much of the window the store hands the agent at most; the agent then fits it to its token budget."""

    conversations: int = 30
    memory_units: int = 80
    concepts: int = 60


async def insight_written(db: Executor, cycle: Cycle) -> bool:
    """Whether the insight of this cycle is already written (its summary artifact exists)."""
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM derived_artifacts WHERE artifact_id = $2 AND user_id = $1)",
        cycle.user_id,
        summary_artifact_id(cycle),
    )
    return bool(found)


async def load_insight_material(
    db: Executor,
    cycle: Cycle,
    *,
    window_start: datetime,
    window_end: datetime,
    importance_threshold: float,
    limits: MaterialLimits | None = None,
) -> InsightMaterial:
    """The cycle's material, from `window_start` on (see the module docstring for why each read is bounded)."""
    limits = limits or MaterialLimits()
    since = to_db(window_start)
    if isinstance(db, asyncpg.Pool):  # one connection for all the reads
        async with db.acquire() as conn:
            return await _load(conn, cycle, since, window_start, window_end, importance_threshold, limits)
    return await _load(db, cycle, since, window_start, window_end, importance_threshold, limits)


async def _load(
    db: Executor,
    cycle: Cycle,
    since: datetime,
    window_start: datetime,
    window_end: datetime,
    threshold: float,
    limits: MaterialLimits,
) -> InsightMaterial:
    user_id = cycle.user_id
    user = await db.fetchrow(
        "SELECT memory_profile, knowledge_graph_schema, next_conversation_context_package, "
        "concepts_created_in_cycle FROM users WHERE user_id = $1",
        user_id,
    )
    # the window's memory units: an index range scan; every later read goes from their ids by key
    window = await db.fetch(
        "SELECT muid, source_conversation_id FROM memory_units "
        f"WHERE user_id = $1 AND {MEMORY_LEARNED_AT} >= $2 AND {MEMORY_LEARNED_AT} < $3 LIMIT $4",
        user_id,
        since,
        to_db(window_end),
        WINDOW_CAP,
    )
    unit_ids = [r["muid"] for r in window]
    units = await db.fetch(
        "SELECT muid, title, content, importance_score, sentiment_score, creation_ts, source_conversation_id "
        "FROM memory_units WHERE user_id = $1 AND muid = ANY($2::text[]) "
        "ORDER BY importance_score DESC NULLS LAST, creation_ts DESC, muid LIMIT $3",
        user_id,
        unit_ids,
        limits.memory_units,
    )
    processed = await db.fetch(
        "SELECT id, title, context_summary, importance_score, start_time FROM conversations "
        "WHERE user_id = $1 AND id = ANY($2::text[]) AND status = 'processed'",
        user_id,
        sorted({r["source_conversation_id"] for r in window if r["source_conversation_id"] is not None}),
    )
    shown = sorted(
        (r for r in processed if r["importance_score"] is not None and r["importance_score"] >= threshold),
        key=lambda r: (-r["importance_score"], -r["start_time"].timestamp(), r["id"]),
    )[: limits.conversations]
    concepts = await _cycle_concepts(db, user_id, unit_ids, limits)
    growth = await _growth_totals(db, user_id, since, unit_ids, [c.concept_id for c in concepts])
    return InsightMaterial(
        user_id=user_id,
        cycle_start=cycle.start,
        window_start=window_start,
        window_end=window_end,
        active_conversations=len(processed),
        conversations=tuple(
            ConversationDigest(
                conversation_id=r["id"],
                title=r["title"],
                summary=r["context_summary"],
                importance=r["importance_score"],
                start_time=_aware(r["start_time"]),
            )
            for r in shown
        ),
        memory_units=tuple(_memory(r) for r in units),
        concepts=tuple(concepts),
        growth=tuple(growth),
        memory_profile=_object(user["memory_profile"]) if user else None,
        knowledge_graph_schema=_object(user["knowledge_graph_schema"]) if user else None,
        next_context=_object(user["next_conversation_context_package"]) if user else None,
        concepts_created_in_cycle=int(user["concepts_created_in_cycle"]) if user else 0,
    )


def _object(value: Any) -> dict[str, Any] | None:
    """A JSONB column the web app also writes: anything but an object reads as None."""
    return value if isinstance(value, dict) else None


async def _cycle_concepts(
    db: Executor, user_id: str, unit_ids: Sequence[str], limits: MaterialLimits
) -> list[ConceptDigest]:
    """The active concepts the window's memory units are related to, most mentioned first; ties go by name, so the
    same material always shows the same handles (ids are random). Read by key through the indexes ((user_id,
    source_id, …), (user_id, target_id), the primary key), never by a scan of the user's rows."""
    mentioned = await db.fetch(
        f"""
        SELECT concept_id, count(*) AS mentions FROM (
            SELECT e.target_id AS concept_id FROM runtime.knowledge_edges e
            WHERE e.user_id = $1 AND e.source_id = ANY($2::text[]) AND e.source_type = 'MemoryUnit'
              AND e.target_type = 'Concept' AND e.relationship_type NOT IN {_STRUCTURAL}
            UNION ALL
            SELECT e.source_id FROM runtime.knowledge_edges e
            WHERE e.user_id = $1 AND e.target_id = ANY($2::text[]) AND e.target_type = 'MemoryUnit'
              AND e.source_type = 'Concept' AND e.relationship_type NOT IN {_STRUCTURAL}
        ) AS links GROUP BY concept_id
        """,
        user_id,
        list(unit_ids),
    )
    return await _concepts_by_id(db, user_id, {r["concept_id"]: r["mentions"] for r in mentioned}, limits.concepts)


async def load_concepts(db: Executor, user_id: str, concept_ids: Sequence[str]) -> list[ConceptDigest]:
    """These active concepts of the user, by primary key, in the order given (the job adds the cycle concepts'
    strongest neighbours in the graph this way)."""
    order = {concept_id: n for n, concept_id in enumerate(concept_ids)}
    found = await _concepts_by_id(db, user_id, dict.fromkeys(concept_ids, 0), len(order))
    return sorted(found, key=lambda c: order[c.concept_id])


async def _concepts_by_id(db: Executor, user_id: str, mentions: dict[str, int], limit: int) -> list[ConceptDigest]:
    """The active ones of these concepts (by primary key), most mentioned first, then by salience and name."""
    rows = await db.fetch(
        "SELECT c.concept_id, c.name, c.type, c.description, c.salience, m.mentions "
        "FROM unnest($2::text[], $3::int[]) AS m(concept_id, mentions) JOIN concepts c ON c.concept_id = m.concept_id "
        "WHERE c.user_id = $1 AND c.status = 'active' "
        "ORDER BY m.mentions DESC, c.salience DESC NULLS LAST, c.name, c.concept_id LIMIT $4",
        user_id,
        list(mentions),
        list(mentions.values()),
        limit,
    )
    goals = [r["concept_id"] for r in rows if is_goal_type(r["type"])]
    told = await derived_artifacts.concepts_with_artifact(db, user_id, ArtifactType.GOAL_ACHIEVEMENT_STORY, goals)
    return [_concept(r, r["concept_id"] in told) for r in rows]


def _concept(row: Any, story_told: bool) -> ConceptDigest:
    return ConceptDigest(
        concept_id=row["concept_id"],
        name=row["name"],
        type=row["type"],
        description=row["description"],
        salience=row["salience"],
        mentions=int(row["mentions"]),
        story_told=story_told,
    )


async def load_goal_beginnings(
    db: Executor, user_id: str, goal_ids: Sequence[str], *, cycle_units: Collection[str], goals: int, per_goal: int
) -> list[tuple[str, MemoryDigest]]:
    """Where these goals began: the first `per_goal` memory units (by creation_ts) related to each, but the cycle's
    own (`cycle_units`, shown already), for at most `goals` goals: those a cycle unit IS_MILESTONE_FOR first (the
    ones most likely reached), then in the order given. A goal achievement story begins there, and recall, ranking
    by likeness to the cycle's themes, need not find it. (goal id, memory) pairs; read by key through the
    knowledge_edges indexes, like the cycle's concepts."""
    rows = await db.fetch(
        f"""
        WITH chosen AS (
            SELECT g.goal_id, g.n, EXISTS (
                SELECT 1 FROM runtime.knowledge_edges e
                WHERE e.user_id = $1 AND e.source_id = ANY($3::text[]) AND e.source_type = 'MemoryUnit'
                  AND e.target_id = g.goal_id AND e.target_type = 'Concept' AND e.relationship_type = $4
            ) AS milestone
            FROM unnest($2::text[]) WITH ORDINALITY AS g(goal_id, n)
            ORDER BY milestone DESC, g.n LIMIT $5
        )
        SELECT c.goal_id, m.muid, m.title, m.content, m.importance_score, m.sentiment_score, m.creation_ts,
               m.source_conversation_id
        FROM chosen c
        CROSS JOIN LATERAL (
            SELECT u.* FROM memory_units u
            WHERE u.user_id = $1 AND NOT (u.muid = ANY($3::text[])) AND u.muid IN (
                SELECT e.source_id FROM runtime.knowledge_edges e
                WHERE e.user_id = $1 AND e.target_id = c.goal_id AND e.target_type = 'Concept'
                  AND e.source_type = 'MemoryUnit' AND e.relationship_type NOT IN {_STRUCTURAL}
                UNION
                SELECT e.target_id FROM runtime.knowledge_edges e
                WHERE e.user_id = $1 AND e.source_id = c.goal_id AND e.source_type = 'Concept'
                  AND e.target_type = 'MemoryUnit' AND e.relationship_type NOT IN {_STRUCTURAL}
            )
            ORDER BY u.creation_ts, u.muid LIMIT $6
        ) AS m
        ORDER BY c.milestone DESC, c.n, m.creation_ts, m.muid
        """,
        user_id,
        list(goal_ids),
        list(cycle_units),
        RelationshipType.IS_MILESTONE_FOR.value,
        goals,
        per_goal,
    )
    return [(r["goal_id"], _memory(r)) for r in rows]


def _memory(row: Any) -> MemoryDigest:
    return MemoryDigest(
        muid=row["muid"],
        title=row["title"],
        content=row["content"],
        importance=row["importance_score"],
        sentiment=row["sentiment_score"],
        creation_ts=_aware(row["creation_ts"]),
        source_conversation_id=row["source_conversation_id"],
    )


async def _growth_totals(
    db: Executor, user_id: str, since: datetime, unit_ids: Sequence[str], concept_ids: Sequence[str]
) -> list[GrowthTotal]:
    """Growth per dimension in the window, from the events about the material's memory units and concepts (found by
    entity through the (user_id, entity_id, entity_type) index, not by scanning the user's every event)."""
    rows = await db.fetch(
        "SELECT dim_key, sum(delta) AS total, count(*) AS events FROM growth_events "
        "WHERE user_id = $1 AND entity_id = ANY($2::text[]) AND created_at >= $3 GROUP BY dim_key ORDER BY dim_key",
        user_id,
        [*unit_ids, *concept_ids],
        since,
    )
    known = {d.value for d in GrowthDimension}
    return [
        GrowthTotal(dim_key=GrowthDimension(r["dim_key"]), total=float(r["total"]), events=int(r["events"]))
        for r in rows
        if r["dim_key"] in known
    ]


async def load_communities(db: Executor, user_id: str) -> list[ExistingCommunity]:
    """The user's communities, for the detection to continue the ones whose members barely changed."""
    return [
        ExistingCommunity(
            community_id=c.community_id,
            name=c.name,
            description=c.description,
            core_concept_ids=tuple(c.core_concept_ids),
        )
        for c in await communities.list_communities(db, user_id)
    ]


async def load_concept_graph(db: Executor, user_id: str) -> list[ConceptLink]:
    """The user's concept graph for community detection, from the truth in runtime.knowledge_edges (not the graph
    store, which may lag): each relationship between two active concepts adds its strength; each memory unit
    related to both adds the smaller of its two strongest links (store.graph.base.concept_weights' definition)."""
    direct = await db.fetch(
        f"""
        WITH active AS (SELECT concept_id FROM concepts WHERE user_id = $1 AND status = 'active')
        SELECT e.source_id AS a, e.target_id AS b, e.strength AS weight FROM runtime.knowledge_edges e
        JOIN active s ON s.concept_id = e.source_id JOIN active t ON t.concept_id = e.target_id
        WHERE e.user_id = $1 AND e.source_type = 'Concept' AND e.target_type = 'Concept'
          AND e.relationship_type NOT IN {_STRUCTURAL}
        """,
        user_id,
    )
    shared = await db.fetch(
        f"""
        WITH active AS (SELECT concept_id FROM concepts WHERE user_id = $1 AND status = 'active'),
        links AS (
            SELECT CASE WHEN e.source_type = 'MemoryUnit' THEN e.source_id ELSE e.target_id END AS unit,
                   CASE WHEN e.source_type = 'Concept' THEN e.source_id ELSE e.target_id END AS concept,
                   max(e.strength) AS strength
            FROM runtime.knowledge_edges e
            WHERE e.user_id = $1 AND e.relationship_type NOT IN {_STRUCTURAL}
              AND ((e.source_type = 'MemoryUnit' AND e.target_type = 'Concept')
                OR (e.source_type = 'Concept' AND e.target_type = 'MemoryUnit'))
            GROUP BY 1, 2
        ), live AS (SELECT l.* FROM links l JOIN active a ON a.concept_id = l.concept)
        SELECT x.concept AS a, y.concept AS b, sum(least(x.strength, y.strength)) AS weight
        FROM live x JOIN live y ON x.unit = y.unit AND x.concept < y.concept
        GROUP BY x.concept, y.concept
        """,
        user_id,
    )
    weighted = concept_weights(
        [(r["a"], r["b"], float(r["weight"])) for r in direct if r["a"] != r["b"]],
        [(r["a"], r["b"], float(r["weight"])) for r in shared],
    )
    return [ConceptLink(a=edge.a, b=edge.b, weight=edge.weight) for edge in weighted]


async def concept_names(db: Executor, user_id: str, concept_ids: Sequence[str]) -> dict[str, str]:
    """Names of the user's concepts by id (for naming detected communities by their members)."""
    rows = await db.fetch(
        "SELECT concept_id, name FROM concepts WHERE user_id = $1 AND concept_id = ANY($2::text[])",
        user_id,
        list(concept_ids),
    )
    return {r["concept_id"]: r["name"] for r in rows}
