"""Recall: the user's memory units and concepts most relevant to one or more queries, ranked as memory should be
(similarity, recency and importance together: core/recall.py), each with its score and why it came back.

Vector search finds what reads like a query (a few times more candidates than asked for, so an older, important
memory that is merely similar still competes); the graph, when given, adds what the best hits are related to (a
concept a memory unit is about, the memory behind a concept), which no similarity finds. Postgres has the last
word: recency and importance are read from the rows, a hit whose row is gone (the stores lag a commit behind) is
dropped, and titles and texts are the rows', not the stores'. Queries are embedded by the caller (the embedder is a
model client, the agents' layer), so this stays pure store.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.recall import RecallWeights, Scored, memory_importance, score
from core.vocabulary import NodeLabel
from store.graph.base import GraphStore, NodeRef
from store.postgres import Executor
from store.repos._base import utc_now
from store.sync import read_records
from store.vector.base import SourceEntityType, VectorStore

NEIGHBOUR_DISCOUNT = 0.8
"""A neighbour's similarity is its hit's times the relationship's strength times this: never above what it came
with."""
CANDIDATES_PER_RESULT = 3
"""Vector hits read per result asked for (at least MIN_CANDIDATES), per query, before the ranking."""
MIN_CANDIDATES = 30
RECALLED: dict[SourceEntityType, NodeLabel] = {
    SourceEntityType.MEMORY_UNIT: NodeLabel.MEMORY_UNIT,
    SourceEntityType.CONCEPT: NodeLabel.CONCEPT,
}
KINDS: dict[NodeLabel, SourceEntityType] = {label: kind for kind, label in RECALLED.items()}


@dataclass(frozen=True)
class Query:
    """One query: what it is called in the reasons ("the query", a theme's name) and its vector."""

    name: str
    vector: Sequence[float]


@dataclass(frozen=True)
class Recalled:
    label: NodeLabel
    entity_id: str
    title: str
    text: str
    score: float
    why: str
    """Where it came from (similar to a query, or related to a hit in the graph), then which component carried it."""
    carried_by: str
    components: dict[str, float] = field(default_factory=dict)
    at: datetime | None = None
    """When it happened (a memory unit's creation_ts) or began (a concept's created_at)."""
    importance: float | None = None
    """As stored: a memory unit's importance_score (1 to 10), a concept's salience (0 to 1)."""


@dataclass
class _Candidate:
    label: NodeLabel
    entity_id: str
    similarity: float
    origin: str


async def recall(
    db: Executor,
    vector: VectorStore,
    user_id: str,
    queries: Sequence[Query],
    *,
    weights: RecallWeights,
    graph: GraphStore | None = None,
    labels: Collection[NodeLabel] = tuple(KINDS),
    limit: int = 10,
    expand: int = 5,
    exclude: Collection[str] = (),
    now: datetime | None = None,
) -> list[Recalled]:
    """Up to `limit` of the user's memory units and concepts (of `labels`), best first by the ranking: the vector hits
    of every query (an entity keeps its best similarity), plus, with a graph, the neighbours (depth 1) of the best
    `expand` hits; `exclude` names entity ids the caller has already (they are not returned)."""
    if not 1 <= limit <= 100:
        raise ValueError(f"recall limit must be between 1 and 100, got {limit}")
    kinds = [KINDS[label] for label in labels]
    wanted = min(max(limit * CANDIDATES_PER_RESULT, MIN_CANDIDATES) + len(exclude), 1000)
    found: dict[tuple[NodeLabel, str], _Candidate] = {}
    hits = []
    for query in queries:
        for hit in await vector.search(user_id, query.vector, limit=wanted, entity_types=kinds):
            label = RECALLED[hit.source_entity_type]
            origin = f"similar to {query.name} ({hit.score:.2f})"
            _keep(found, _Candidate(label, hit.source_entity_id, hit.score, origin))
            hits.append(hit)
    if graph is not None:
        for hit in sorted(hits, key=lambda h: -h.score)[:expand]:
            origin_ref = NodeRef(label=RECALLED[hit.source_entity_type], key=hit.source_entity_id)
            around = await graph.neighbourhood(user_id, origin_ref, depth=1)
            for edge in around.edges:
                other = edge.target if edge.source == origin_ref else edge.source
                if other.label not in labels:
                    continue
                arrow = f"-[{edge.type}]->" if edge.source == origin_ref else f"<-[{edge.type}]-"
                origin = f"related to '{hit.title}' ({arrow}, strength {edge.strength:.2f})"
                similarity = hit.score * edge.strength * NEIGHBOUR_DISCOUNT
                _keep(found, _Candidate(other.label, other.key, similarity, origin))
    skip = set(exclude)
    candidates = [c for c in found.values() if c.entity_id not in skip]
    return await _ranked(db, user_id, candidates, weights, limit, now or utc_now())


def _keep(found: dict[tuple[NodeLabel, str], _Candidate], candidate: _Candidate) -> None:
    """An entity found several ways keeps its highest similarity (and that way's reason)."""
    key = (candidate.label, candidate.entity_id)
    known = found.get(key)
    if known is None or candidate.similarity > known.similarity:
        found[key] = candidate


async def _ranked(
    db: Executor, user_id: str, candidates: list[_Candidate], weights: RecallWeights, limit: int, now: datetime
) -> list[Recalled]:
    """The candidates whose rows exist (an active concept), scored from their rows, best first."""
    rows: dict[NodeLabel, dict[str, Any]] = {}
    for label in {c.label for c in candidates}:
        rows[label] = await read_records(db, user_id, label, [c.entity_id for c in candidates if c.label is label])
    recalled: list[Recalled] = []
    for candidate in candidates:
        record = rows[candidate.label].get(candidate.entity_id)
        if record is None or (candidate.label is NodeLabel.CONCEPT and record.status != "active"):
            continue
        if candidate.label is NodeLabel.CONCEPT:
            title, text, at = f"{record.name} ({record.type})", record.description or "", record.created_at
            importance, touched = record.salience, record.last_updated_ts
            scored: Scored = score(
                weights, similarity=candidate.similarity, touched=touched, importance=importance, now=now
            )
        else:
            title, text, at, importance = record.title, record.content, record.creation_ts, record.importance_score
            scored = score(
                weights,
                similarity=candidate.similarity,
                touched=record.last_modified_ts,
                importance=memory_importance(importance),
                now=now,
            )
        recalled.append(
            Recalled(
                label=candidate.label,
                entity_id=candidate.entity_id,
                title=title,
                text=text,
                score=scored.score,
                why=f"{candidate.origin}; {scored.explain()}",
                carried_by=scored.carried_by,
                components=scored.components,
                at=at,
                importance=importance,
            )
        )
    recalled.sort(key=lambda r: (-r.score, r.label, r.entity_id))
    return recalled[:limit]
