"""What the graph and vector stores must hold for a set of entities, read from Postgres (the truth).

The outbox names entities; this module turns them into the changes that make a derived store match Postgres now:
an entity whose row exists is upserted with its current properties and outgoing relationships, one whose row is
gone (or, for vectors, a concept merged away) is deleted. The same functions serve the dispatcher, `reconcile` and
`rebuild`, so there is one definition of "what the store should hold". Embedding is the caller's (agents layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.revisions import RevisionKind
from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from store.concept_names import ConceptName, concept_name
from store.graph.base import (
    ROW_KEY_COLUMN,
    EdgeKey,
    GraphBatch,
    GraphEdge,
    GraphNode,
    GraphStore,
    NodeRef,
    edge_type,
    node_from_row,
)
from store.postgres import Executor
from store.repos import concepts, memory_units
from store.repos.communities import CommunityRecord
from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.repos.memory_revisions import MemoryRevisionRecord
from store.repos.memory_units import MemoryUnitRecord
from store.repos.users import UserRecord
from store.vector.base import ItemKey, KnowledgeItem, SourceEntityType, StoredVector
from store.vector.texts import concept_item, derived_artifact_item, memory_unit_item

TABLE: dict[NodeLabel, str] = {
    NodeLabel.USER: "users",
    NodeLabel.MEMORY_UNIT: "memory_units",
    NodeLabel.CONCEPT: "concepts",
    NodeLabel.DERIVED_ARTIFACT: "derived_artifacts",
    NodeLabel.COMMUNITY: "communities",
    NodeLabel.REVISION: "memory_revisions",
}
RECORD: dict[NodeLabel, Any] = {
    NodeLabel.USER: UserRecord,
    NodeLabel.MEMORY_UNIT: MemoryUnitRecord,
    NodeLabel.CONCEPT: ConceptRecord,
    NodeLabel.DERIVED_ARTIFACT: DerivedArtifactRecord,
    NodeLabel.COMMUNITY: CommunityRecord,
    NodeLabel.REVISION: MemoryRevisionRecord,
}
VECTOR_LABELS: dict[NodeLabel, SourceEntityType] = {
    NodeLabel.MEMORY_UNIT: SourceEntityType.MEMORY_UNIT,
    NodeLabel.CONCEPT: SourceEntityType.CONCEPT,
    NodeLabel.DERIVED_ARTIFACT: SourceEntityType.DERIVED_ARTIFACT,
}
"""The entities the vector store holds; users and communities are in the graph only."""


TRUTH_EDGE_TYPES = [kind.value for kind in RelationshipType]
"""The relationships Postgres holds as truth in runtime.knowledge_edges (what agents extracted). Structural ones are
derived from columns here; with the Postgres graph backend, knowledge_edges rows of structural types belong to the
graph itself (store/graph/postgres.py) and must never be read back as truth."""


_MENTIONED = """
SELECT DISTINCT CASE WHEN source_type = 'MemoryUnit' THEN source_id ELSE target_id END AS unit,
       CASE WHEN source_type = 'Concept' THEN source_id ELSE target_id END AS concept
FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type = ANY($3::text[])
  AND ((source_type = 'MemoryUnit' AND source_id = ANY($2::text[]) AND target_type = 'Concept')
    OR (target_type = 'MemoryUnit' AND target_id = ANY($2::text[]) AND source_type = 'Concept'))
"""
"""The concepts each of these memory units mentions: those an extracted relationship joins it to."""


@dataclass(frozen=True)
class Ref:
    label: NodeLabel
    entity_id: str


async def read_records(db: Executor, user_id: str, label: NodeLabel, ids: Sequence[str] | None) -> dict[str, Any]:
    """The user's rows of `label` as records, by id (every row of the label when `ids` is None)."""
    key = ROW_KEY_COLUMN[label]
    table = TABLE[label]
    if ids is None:
        rows = await db.fetch(f"SELECT * FROM {table} WHERE user_id = $1", user_id)
    else:
        rows = await db.fetch(f"SELECT * FROM {table} WHERE user_id = $1 AND {key} = ANY($2::text[])", user_id, ids)
    return {str(row[key]): RECORD[label].from_row(row) for row in rows}


def _grouped(refs: Iterable[Ref]) -> dict[NodeLabel, list[str]]:
    groups: dict[NodeLabel, list[str]] = {}
    for ref in refs:
        groups.setdefault(ref.label, [])
        if ref.entity_id not in groups[ref.label]:
            groups[ref.label].append(ref.entity_id)
    return groups


def _node(label: NodeLabel, record: Any, user_id: str) -> GraphNode:
    return node_from_row(label, record.model_dump(), user_id)


async def outgoing_edges(db: Executor, user_id: str, nodes: Mapping[NodeLabel, Mapping[str, Any]]) -> list[GraphEdge]:
    """The relationships leaving these nodes in Postgres: runtime.knowledge_edges rows of the extracted vocabulary,
    a concept's community (concepts.community_id) and the concept it was merged into (merged_into_concept_id), a
    memory unit's author (the User it belongs to) and the concepts it mentions (those an extracted relationship
    joins it to, either way), a revision's entity (memory_revisions.entity_id), an artifact's sources
    (derived_artifacts.source_*) and the memory units and concepts it highlights (`artifact_highlights`, those the
    user still has)."""
    sources = [key for label, found in nodes.items() if label is not NodeLabel.USER for key in found]
    edges: dict[EdgeKey, GraphEdge] = {}
    if sources:
        rows = await db.fetch(
            "SELECT source_id, source_type, target_id, target_type, relationship_type, strength, description, "
            "source_conversation_id FROM runtime.knowledge_edges WHERE user_id = $1 AND source_id = ANY($2::text[]) "
            "AND relationship_type = ANY($3::text[])",
            user_id,
            sources,
            TRUTH_EDGE_TYPES,
        )
        for row in rows:
            edge = GraphEdge(
                source=NodeRef(label=NodeLabel(row["source_type"]), key=row["source_id"]),
                type=edge_type(row["relationship_type"]),
                target=NodeRef(label=NodeLabel(row["target_type"]), key=row["target_id"]),
                strength=row["strength"],
                description=row["description"],
                source_conversation_id=row["source_conversation_id"],
            )
            edges[edge.key] = edge
    for concept in nodes.get(NodeLabel.CONCEPT, {}).values():
        if concept.community_id:
            edge = GraphEdge(
                source=NodeRef(label=NodeLabel.CONCEPT, key=concept.concept_id),
                type=StructuralRelationshipType.BELONGS_TO_COMMUNITY,
                target=NodeRef(label=NodeLabel.COMMUNITY, key=concept.community_id),
            )
            edges.setdefault(edge.key, edge)
    for revision in nodes.get(NodeLabel.REVISION, {}).values():
        revised = revised_entity(revision)
        if revised is not None:
            edge = GraphEdge(
                source=NodeRef(label=NodeLabel.REVISION, key=revision.revision_id),
                type=StructuralRelationshipType.REVISES,
                target=NodeRef(label=revised, key=revision.entity_id),
            )
            edges.setdefault(edge.key, edge)
    for concept in nodes.get(NodeLabel.CONCEPT, {}).values():
        if concept.merged_into_concept_id and concept.merged_into_concept_id != concept.concept_id:
            edge = GraphEdge(
                source=NodeRef(label=NodeLabel.CONCEPT, key=concept.concept_id),
                type=StructuralRelationshipType.MERGED_INTO,
                target=NodeRef(label=NodeLabel.CONCEPT, key=concept.merged_into_concept_id),
            )
            edges.setdefault(edge.key, edge)
    units = list(nodes.get(NodeLabel.MEMORY_UNIT, {}))
    if units:
        for row in await db.fetch(_MENTIONED, user_id, units, TRUTH_EDGE_TYPES):
            edge = GraphEdge(
                source=NodeRef(label=NodeLabel.MEMORY_UNIT, key=row["unit"]),
                type=StructuralRelationshipType.MENTIONS,
                target=NodeRef(label=NodeLabel.CONCEPT, key=row["concept"]),
            )
            edges.setdefault(edge.key, edge)
    for unit in nodes.get(NodeLabel.MEMORY_UNIT, {}).values():
        edge = GraphEdge(
            source=NodeRef(label=NodeLabel.MEMORY_UNIT, key=unit.muid),
            type=StructuralRelationshipType.AUTHORED_BY,
            target=NodeRef(label=NodeLabel.USER, key=user_id),
        )
        edges.setdefault(edge.key, edge)
    for kind, artifact_id, target in await _cited(db, user_id, nodes.get(NodeLabel.DERIVED_ARTIFACT, {})):
        edge = GraphEdge(source=NodeRef(label=NodeLabel.DERIVED_ARTIFACT, key=artifact_id), type=kind, target=target)
        edges.setdefault(edge.key, edge)
    return list(edges.values())


_MU, _CONCEPT = NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT
_CITED_LISTS = {"memory_unit_ids": _MU, "concept_ids": _CONCEPT}
_CITED_KEYS = {"memory_unit_id": _MU, "concept_id": _CONCEPT}


def artifact_highlights(content_data: object) -> list[tuple[NodeLabel, str]]:
    """The memory units and concepts an artifact's content_data cites, whatever its type, in order and without
    repeats: each text of a top-level list named `…memory_unit_ids` or `…concept_ids` (an insight's
    `source_memory_unit_ids` and `source_concept_ids`), and the `memory_unit_id` / `concept_id` of each object of
    a top-level list (a cycle report's `memory_highlights` and `top_concepts`). So an artifact type that cites its
    material either way is highlighted with no change here. Stored JSON can be anything: what has another shape
    is ignored."""
    if not isinstance(content_data, dict):
        return []
    found: list[tuple[NodeLabel, str]] = []
    for name, value in content_data.items():
        if not isinstance(value, list):
            continue
        listed = next((label for suffix, label in _CITED_LISTS.items() if str(name).endswith(suffix)), None)
        for item in value:
            if listed is not None and isinstance(item, str):
                found.append((listed, item))
            elif isinstance(item, dict):
                found += [(label, item[key]) for key, label in _CITED_KEYS.items() if isinstance(item.get(key), str)]
    return [cited for cited in dict.fromkeys(found) if cited[1]]


async def _cited(
    db: Executor, user_id: str, artifacts: Mapping[str, Any]
) -> list[tuple[StructuralRelationshipType, str, NodeRef]]:
    """(type, artifact id, target) of each DERIVED_FROM and HIGHLIGHTS relationship of these artifacts: only to
    memory units and concepts the user has, so an id of a memory forgotten since, or another user's, is no
    relationship (no placeholder node, no refused batch). content_data is written by agents and by the web app: its
    ids are claims, checked here in two lookups for both kinds. DERIVED_FROM used to trust them, and one foreign id in
    an artifact refused its user's whole graph batch."""
    cited = {
        kind: {key: found(artifact) for key, artifact in artifacts.items()}
        for kind, found in (
            (StructuralRelationshipType.DERIVED_FROM, artifact_sources),
            (StructuralRelationshipType.HIGHLIGHTS, lambda artifact: artifact_highlights(artifact.content_data)),
        )
    }
    wanted = {ref for per_artifact in cited.values() for found in per_artifact.values() for ref in found}
    units = await memory_units.existing_memory_unit_ids(db, user_id, (k for label, k in wanted if label is _MU))
    ideas = await concepts.existing_concept_ids(db, user_id, (k for label, k in wanted if label is _CONCEPT))
    have = {(_MU, key) for key in units} | {(_CONCEPT, key) for key in ideas}
    return [
        (kind, artifact_id, NodeRef(label=label, key=key))
        for kind, per_artifact in cited.items()
        for artifact_id, found in per_artifact.items()
        for label, key in found
        if (label, key) in have
    ]


def revised_entity(revision: MemoryRevisionRecord) -> NodeLabel | None:
    """The label of the node a revision REVISES; None for a forgotten memory (the unit is gone: the revision keeps
    only when and why) or an entity type the graph does not know (a row written by another program)."""
    if revision.kind == RevisionKind.FORGOTTEN or revision.entity_type not in _REVISABLE:
        return None
    return NodeLabel(revision.entity_type)


_REVISABLE = {NodeLabel.MEMORY_UNIT.value, NodeLabel.CONCEPT.value}


def artifact_sources(artifact: Any) -> list[tuple[NodeLabel, str]]:
    """What an artifact rests on: the source columns (the first of each kind) and the full lists an agent keeps in
    content_data (`source_memory_unit_ids`, `source_concept_ids`), without repeats."""
    data = artifact.content_data if isinstance(artifact.content_data, dict) else {}
    found: list[tuple[NodeLabel, str]] = []
    for label, column, listed in (
        (NodeLabel.MEMORY_UNIT, artifact.source_memory_unit_id, data.get("source_memory_unit_ids")),
        (NodeLabel.CONCEPT, artifact.source_concept_id, data.get("source_concept_ids")),
    ):
        ids = [column] if column else []
        ids += [value for value in listed if isinstance(value, str)] if isinstance(listed, list) else []
        found += [(label, value) for value in dict.fromkeys(ids) if value]
    return found


async def graph_batch(db: Executor, graph: GraphStore, user_id: str, refs: Iterable[Ref]) -> GraphBatch:
    """The batch that makes `graph` match Postgres for these entities: current nodes and their outgoing
    relationships upserted, relationships the store has from them that Postgres no longer has deleted, and entities
    whose rows are gone deleted (with their relationships)."""
    present: dict[NodeLabel, dict[str, Any]] = {}
    deleted: list[NodeRef] = []
    for label, ids in _grouped(refs).items():
        found = await read_records(db, user_id, label, ids)
        present[label] = found
        deleted += [NodeRef(label=label, key=entity_id) for entity_id in ids if entity_id not in found]
    nodes = [_node(label, record, user_id) for label, found in present.items() for record in found.values()]
    edges = [edge for edge in await outgoing_edges(db, user_id, present) if edge.target not in set(deleted)]
    wanted = {edge.key for edge in edges}
    sources = [node.ref for node in nodes if node.label is not NodeLabel.USER]
    stale = await graph.edges_from(user_id, sources) - wanted
    return GraphBatch(
        upsert_nodes=tuple(nodes),
        upsert_edges=tuple(edges),
        delete_nodes=tuple(deleted),
        delete_edges=tuple(sorted(stale, key=lambda k: (k.source.key, k.type, k.target.key))),
    )


def knowledge_item(label: NodeLabel, record: Any) -> KnowledgeItem | None:
    """The vector item of a row, or None when the store should not hold it (a concept merged or archived)."""
    if label is NodeLabel.MEMORY_UNIT:
        return memory_unit_item(record)
    if label is NodeLabel.CONCEPT:
        return concept_item(record) if record.status == "active" else None
    if label is NodeLabel.DERIVED_ARTIFACT:
        return derived_artifact_item(record)
    return None


@dataclass
class VectorChanges:
    """What makes the vector store match Postgres for some of one user's entities: items to embed and upsert, keys
    to delete, and the names of the active concepts among them (their name vectors, store/concept_names.py)."""

    upserts: list[KnowledgeItem] = field(default_factory=list)
    deletes: list[ItemKey] = field(default_factory=list)
    names: list[ConceptName] = field(default_factory=list)


@dataclass
class VectorWork:
    """What is left of one user's VectorChanges once the stores said what they hold: the items to write with a
    vector they already have (only what is stored beside the vector changed, such as a concept's salience), those to
    embed first, and the concept names whose vector is stale. Items the store holds as they are, and names whose
    vector was made from the same text, need nothing."""

    reuse: list[tuple[KnowledgeItem, list[float]]] = field(default_factory=list)
    embed: list[KnowledgeItem] = field(default_factory=list)
    names: list[ConceptName] = field(default_factory=list)
    deletes: list[ItemKey] = field(default_factory=list)
    current: int = 0
    """Items already stored exactly as they are."""

    @property
    def writes(self) -> int:
        return len(self.reuse) + len(self.embed) + len(self.deletes)


def vector_work(
    changes: VectorChanges, stored: Mapping[ItemKey, StoredVector], stored_names: Mapping[str, str]
) -> VectorWork:
    """Split `changes` by what the vector store holds (`stored`, by key) and the name texts stored for concepts
    (`stored_names`, concept id → text): pure, so the rule is in one place."""
    work = VectorWork(deletes=list(changes.deletes))
    for item in changes.upserts:
        held = stored.get(item.key)
        if held is not None and held.content_hash == item.content_hash:
            work.current += 1
        elif held is not None and held.embedding_hash == item.embedding_hash:
            work.reuse.append((item, held.vector))
        else:
            work.embed.append(item)
    work.names = [name for name in changes.names if stored_names.get(name.concept_id) != name.text]
    return work


async def vector_changes(db: Executor, user_id: str, refs: Iterable[Ref]) -> VectorChanges:
    """The changes that make the vector store (and the concept name vectors) match Postgres for these entities."""
    changes = VectorChanges()
    for label, ids in _grouped(refs).items():
        kind = VECTOR_LABELS.get(label)
        if kind is None:
            continue
        found = await read_records(db, user_id, label, ids)
        for entity_id in ids:
            record = found.get(entity_id)
            item = knowledge_item(label, record) if record is not None else None
            if item is None:
                changes.deletes.append(ItemKey(kind, entity_id))
                continue
            changes.upserts.append(item)
            if isinstance(record, ConceptRecord):
                changes.names.append(concept_name(record))
    return changes


async def user_refs(db: Executor, user_id: str, labels: Iterable[NodeLabel] = tuple(NodeLabel)) -> list[Ref]:
    """Every entity of the user, for `rebuild` and `reconcile`."""
    refs: list[Ref] = []
    for label in labels:
        key = ROW_KEY_COLUMN[label]
        rows = await db.fetch(f"SELECT {key} FROM {TABLE[label]} WHERE user_id = $1 ORDER BY {key}", user_id)
        refs += [Ref(label, str(row[key])) for row in rows]
    return refs
