"""Recall: the user's memory units and concepts most relevant to a text, each with its score and why it came back.

Vector search finds what reads like the query; the graph adds what the hits are related to (a concept a memory
unit highlights, the memory behind a concept), which no similarity finds. Postgres has the last word: a hit whose
row is gone (the stores lag a commit behind) is dropped, and titles and texts are read from the rows, not the stores.
The query is embedded by the caller (the embedder is a model client, the agents' layer), so this stays pure store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.vocabulary import NodeLabel
from store.graph.base import GraphStore, NodeRef
from store.postgres import Executor
from store.sync import read_records
from store.vector.base import SourceEntityType, VectorStore

NEIGHBOUR_DISCOUNT = 0.8
"""A neighbour scores its hit's score times the relationship's strength times this: never above what it came with."""
RECALLED: dict[SourceEntityType, NodeLabel] = {
    SourceEntityType.MEMORY_UNIT: NodeLabel.MEMORY_UNIT,
    SourceEntityType.CONCEPT: NodeLabel.CONCEPT,
}


@dataclass(frozen=True)
class Recalled:
    label: NodeLabel
    entity_id: str
    title: str
    text: str
    score: float
    why: str


@dataclass
class _Candidate:
    label: NodeLabel
    entity_id: str
    score: float
    why: str


async def recall(
    db: Executor,
    graph: GraphStore,
    vector: VectorStore,
    user_id: str,
    query_vector: Sequence[float],
    *,
    limit: int = 10,
    expand: int = 5,
) -> list[Recalled]:
    """Up to `limit` of the user's memory units and concepts, best first: the vector hits, plus the graph
    neighbours (depth 1) of the best `expand` hits, deduplicated (an entity keeps its best score and reason)."""
    if not 1 <= limit <= 100:
        raise ValueError(f"recall limit must be between 1 and 100, got {limit}")
    hits = await vector.search(user_id, query_vector, limit=limit * 2, entity_types=list(RECALLED))
    found: dict[tuple[NodeLabel, str], _Candidate] = {}
    for hit in hits:
        label = RECALLED[hit.source_entity_type]
        why = f"similar to the query ({hit.score:.2f})"
        found[(label, hit.source_entity_id)] = _Candidate(label, hit.source_entity_id, hit.score, why)
    for hit in hits[:expand]:
        origin = NodeRef(label=RECALLED[hit.source_entity_type], key=hit.source_entity_id)
        around = await graph.neighbourhood(user_id, origin, depth=1)
        for edge in around.edges:
            other = edge.target if edge.source == origin else edge.source
            if other.label not in RECALLED.values():
                continue
            score = hit.score * edge.strength * NEIGHBOUR_DISCOUNT
            known = found.get((other.label, other.key))
            if known is None or score > known.score:
                arrow = f"-[{edge.type}]->" if edge.source == origin else f"<-[{edge.type}]-"
                why = f"related to '{hit.title}' ({arrow}, strength {edge.strength:.2f})"
                found[(other.label, other.key)] = _Candidate(other.label, other.key, score, why)
    ranked = sorted(found.values(), key=lambda c: (-c.score, c.label, c.entity_id))
    return await _from_rows(db, user_id, ranked, limit)


async def _from_rows(db: Executor, user_id: str, ranked: list[_Candidate], limit: int) -> list[Recalled]:
    """The candidates whose rows exist (an active concept), in order, with titles and texts from Postgres."""
    rows = {
        label: await read_records(db, user_id, label, [c.entity_id for c in ranked if c.label is label])
        for label in RECALLED.values()
    }
    recalled: list[Recalled] = []
    for candidate in ranked:
        record = rows[candidate.label].get(candidate.entity_id)
        if record is None:
            continue
        if candidate.label is NodeLabel.CONCEPT:
            if record.status != "active":
                continue
            title, text = f"{record.name} ({record.type})", record.description or ""
        else:
            title, text = record.title, record.content
        score = round(candidate.score, 4)
        recalled.append(Recalled(candidate.label, candidate.entity_id, title, text, score, candidate.why))
        if len(recalled) == limit:
            break
    return recalled
