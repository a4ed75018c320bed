"""What the 3D projection is made from: the user's nodes (memory units, concepts, artifacts, communities), their
edges, and the projection's id (the row itself is written by store/repos/graph_projections.py). The vectors come from
the vector store (VectorStore.stored_vectors): a projection never embeds.

Why a projection's id derives from its input: the same cycle can be projected again (a refresh after new material,
a trigger by hand). The id is derived from the user, the cycle and a digest of every placed node's content and the
stored vector it was placed by, and of every edge, so a rerun over unchanged rows finds its row and writes nothing,
and a rerun after changed rows, or after the vector store caught up with them, adds a newer projection (the web app
shows the newest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from core.cycle import Cycle
from store.postgres import Executor
from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.repos.memory_units import MemoryUnitRecord
from store.vector.base import ItemKey, KnowledgeItem, SourceEntityType, StoredVector
from store.vector.texts import concept_item, derived_artifact_item, memory_unit_item

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ProjectionEdge:
    source: str
    target: str
    type: str
    strength: float | None = None


@dataclass
class ProjectionSource:
    """The user's nodes as vector-store items (what is embedded for each), communities with their member concepts,
    and the edges among the nodes."""

    items: list[KnowledgeItem] = field(default_factory=list)
    communities: list[dict[str, Any]] = field(default_factory=list)
    edges: list[ProjectionEdge] = field(default_factory=list)
    skipped: int = 0

    def digest(self, stored: Mapping[ItemKey, StoredVector]) -> str:
        """sha256 of everything a projection placing the items of `stored` is computed from: the placed items' ids,
        content hashes and the content hash their stored vector was written with, memberships and edges."""
        payload = [
            sorted(
                (item.source_entity_type.value, item.source_entity_id, item.content_hash, stored[item.key].content_hash)
                for item in self.items
                if item.key in stored
            ),
            sorted((c["community_id"], c["name"], sorted(c["members"])) for c in self.communities),
            sorted((e.source, e.target, e.type, -1.0 if e.strength is None else e.strength) for e in self.edges),
        ]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


IMPORTANCE_SCALE = 10.0
"""memory_units.importance_score runs 1 to 10; a node's size is in [0, 1] like a concept's salience."""


def node_size(item: KnowledgeItem) -> float | None:
    """A node's size in the cosmos, in [0, 1]: a memory unit's importance / 10, a concept's salience (core/salience.py);
    none for an artifact (its weight is its sources')."""
    if item.importance_score is None or item.source_entity_type is SourceEntityType.DERIVED_ARTIFACT:
        return None
    if item.source_entity_type is SourceEntityType.MEMORY_UNIT:
        return round(min(max(item.importance_score / IMPORTANCE_SCALE, 0.0), 1.0), 4)
    return item.importance_score


def _item(build: Any, record: Any, source: ProjectionSource) -> None:
    try:
        source.items.append(build(record))
    except ValueError as exc:  # an id that is not a UUID or an empty text (rows the web app wrote): not projected
        source.skipped += 1
        log.warning("projection.node_skipped", reason=str(exc))


async def read_projection_source(db: Executor, user_id: str, *, max_memory_units: int) -> ProjectionSource:
    """The `max_memory_units` most important memory units, the active concepts, the derived artifacts, the
    communities and every edge among them (knowledge edges, concept → community, artifact → its sources)."""
    source = ProjectionSource()
    units = await db.fetch(
        "SELECT * FROM memory_units WHERE user_id = $1 ORDER BY importance_score DESC NULLS LAST, creation_ts DESC, "
        "muid LIMIT $2",
        user_id,
        max_memory_units,
    )
    concepts = await db.fetch(
        "SELECT * FROM concepts WHERE user_id = $1 AND status = 'active' ORDER BY concept_id", user_id
    )
    artifacts = await db.fetch("SELECT * FROM derived_artifacts WHERE user_id = $1 ORDER BY artifact_id", user_id)
    for row in units:
        _item(memory_unit_item, MemoryUnitRecord.from_row(row), source)
    for row in concepts:
        _item(concept_item, ConceptRecord.from_row(row), source)
    for row in artifacts:
        _item(derived_artifact_item, DerivedArtifactRecord.from_row(row), source)
    ids = [item.source_entity_id for item in source.items]
    present = set(ids)

    members: dict[str, list[str]] = {}
    for row in concepts:
        if row["community_id"] is not None and row["concept_id"] in present:
            members.setdefault(row["community_id"], []).append(row["concept_id"])
    communities = await db.fetch(
        "SELECT community_id, name FROM communities WHERE user_id = $1 ORDER BY community_id", user_id
    )
    source.communities = [
        {"community_id": c["community_id"], "name": c["name"], "members": members.get(c["community_id"], [])}
        for c in communities
    ]
    edges = await db.fetch(
        "SELECT source_id, target_id, relationship_type, strength FROM runtime.knowledge_edges WHERE user_id = $1 "
        "AND source_id = ANY($2::text[]) AND target_id = ANY($2::text[]) ORDER BY source_id, target_id, "
        "relationship_type",
        user_id,
        ids,
    )
    source.edges = [
        ProjectionEdge(e["source_id"], e["target_id"], e["relationship_type"], e["strength"]) for e in edges
    ]
    source.edges += [
        ProjectionEdge(concept, c["community_id"], "BELONGS_TO_COMMUNITY")
        for c in source.communities
        for concept in c["members"]
    ]
    for row in artifacts:
        for column in ("source_memory_unit_id", "source_concept_id"):
            if row["artifact_id"] in present and row[column] in present:
                source.edges.append(ProjectionEdge(row["artifact_id"], row[column], "DERIVED_FROM"))
    return source


def projection_id(cycle: Cycle, digest: str) -> str:
    return cycle.row_id(f"projection:{digest}")
