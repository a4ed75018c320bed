"""The GraphStore port: what every graph backend (Neo4j, the embedded Postgres graph) must do, and its records.

Postgres is the truth; a graph store is derived from it through the outbox and can be rebuilt at any time. So
every write is an idempotent upsert or delete keyed on the seed's ids, applied as one `GraphBatch` per user in one
transaction, and every read takes the user id: nothing ever crosses users. What a node holds (which columns of its
row) and how its content is hashed for reconciliation are defined here, once, for every backend.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import PermanentError, TransientError
from core.vocabulary import EntityKind, NodeLabel, RelationshipType, StructuralRelationshipType

EdgeType = RelationshipType | StructuralRelationshipType
"""A relationship type: the ingestion vocabulary plus the structural ones. Nothing else reaches a query."""

EDGE_TYPES: tuple[EdgeType, ...] = (*RelationshipType, *StructuralRelationshipType)

KEY_PROPERTY: dict[NodeLabel, str] = {
    NodeLabel.USER: "userId",
    NodeLabel.MEMORY_UNIT: "muid",
    NodeLabel.CONCEPT: "id",
    NodeLabel.DERIVED_ARTIFACT: "id",
    NodeLabel.COMMUNITY: "community_id",
    NodeLabel.REVISION: "id",
}
"""The key property of each label, as the seed's uniqueness constraints name it (and Orrery's for Revision)."""

USER_PROPERTY = "userId"
HASH_PROPERTY = "content_hash"

ROW_KEY_COLUMN: dict[NodeLabel, str] = {
    NodeLabel.USER: "user_id",
    NodeLabel.MEMORY_UNIT: "muid",
    NodeLabel.CONCEPT: "concept_id",
    NodeLabel.DERIVED_ARTIFACT: "artifact_id",
    NodeLabel.COMMUNITY: "community_id",
    NodeLabel.REVISION: "revision_id",
}

NODE_COLUMNS: dict[NodeLabel, tuple[str, ...]] = {
    NodeLabel.USER: ("name", "region", "timezone", "language_preference", "account_status", "created_at"),
    NodeLabel.MEMORY_UNIT: (
        "title",
        "content",
        "creation_ts",
        "ingestion_ts",
        "last_modified_ts",
        "importance_score",
        "sentiment_score",
        "source_conversation_id",
    ),
    NodeLabel.CONCEPT: (
        "name",
        "type",
        "description",
        "status",
        "salience",
        "created_at",
        "last_updated_ts",
        "community_id",
        "merged_into_concept_id",
    ),
    NodeLabel.DERIVED_ARTIFACT: (
        "artifact_type",
        "title",
        "content_narrative",
        "created_at",
        "source_memory_unit_id",
        "source_concept_id",
    ),
    NodeLabel.COMMUNITY: ("name", "description", "created_at", "last_analyzed_ts"),
    NodeLabel.REVISION: (
        "entity_type",
        "entity_id",
        "kind",
        "source_conversation_id",
        "source_interaction_id",
        "created_at",
    ),
}
"""The row columns a node carries (besides its key and userId): the seed's scalar columns. JSON columns (a
revision's before and after values among them) and the user's e-mail and password hash stay in Postgres."""

TEMPORAL_PROPERTIES = frozenset(
    {"created_at", "creation_ts", "ingestion_ts", "last_modified_ts", "last_updated_ts", "last_analyzed_ts"}
)
"""The node properties that are points in time (the seed's DateTime columns among NODE_COLUMNS). The port carries
them as ISO-8601 UTC text, the one form both backends hash; Neo4j stores them as its own DateTime, so the seed's
`creation_ts` index orders and range-filters real instants."""

_KNOWLEDGE = frozenset(NodeLabel(kind.value) for kind in EntityKind)
ENDPOINTS: dict[EdgeType, tuple[frozenset[NodeLabel], frozenset[NodeLabel]]] = {
    **{kind: (_KNOWLEDGE, _KNOWLEDGE) for kind in RelationshipType},
    StructuralRelationshipType.MENTIONS: (frozenset({NodeLabel.MEMORY_UNIT}), frozenset({NodeLabel.CONCEPT})),
    StructuralRelationshipType.BELONGS_TO_COMMUNITY: (
        frozenset({NodeLabel.CONCEPT}),
        frozenset({NodeLabel.COMMUNITY}),
    ),
    StructuralRelationshipType.DERIVED_FROM: (
        frozenset({NodeLabel.DERIVED_ARTIFACT}),
        frozenset({NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT, NodeLabel.DERIVED_ARTIFACT}),
    ),
    StructuralRelationshipType.HIGHLIGHTS: (
        frozenset({NodeLabel.DERIVED_ARTIFACT}),
        frozenset({NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT}),
    ),
    StructuralRelationshipType.REVISES: (
        frozenset({NodeLabel.REVISION}),
        frozenset({NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT}),
    ),
    StructuralRelationshipType.AUTHORED_BY: (frozenset({NodeLabel.MEMORY_UNIT}), frozenset({NodeLabel.USER})),
    StructuralRelationshipType.MERGED_INTO: (frozenset({NodeLabel.CONCEPT}), frozenset({NodeLabel.CONCEPT})),
}
"""Which labels each relationship type joins (source labels, target labels)."""

SOURCE_LABELS: tuple[NodeLabel, ...] = tuple(sorted({label for sources, _ in ENDPOINTS.values() for label in sources}))
"""The labels relationships leave from (Users and Communities only receive them)."""

MAX_DEPTH = 5
"""The deepest neighbourhood a caller may ask for: beyond it a dense graph returns most of the user's memory."""

PropertyValue = str | int | float | bool | list[str]


class GraphStoreUnavailable(TransientError):
    """The graph store cannot be reached (or refused our credentials): its changes wait and are retried."""


class GraphWriteRefused(PermanentError):
    """A change that can never apply (a key owned by another user, a user with no row): retrying cannot help."""


def edge_type(value: str) -> EdgeType:
    """The relationship type named `value`, or ValueError: the one gate between a string and a query's text."""
    for kind in EDGE_TYPES:
        if kind.value == value:
            return kind
    raise ValueError(f"unknown relationship type {value!r}; the graph knows {', '.join(EDGE_TYPES)}")


def graph_value(name: str, value: object) -> PropertyValue | None:
    """A row value as both backends store it: aware datetimes as ISO-8601 UTC text, None as absent, no JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"property {name!r} is {value}; only finite numbers can be stored")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"property {name!r} is a naive datetime; pass an aware (UTC) one")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    kind = type(value).__name__
    raise ValueError(f"property {name!r} has type {kind}; a graph holds text, numbers, booleans, datetimes, text lists")


def point_in_time(name: str, value: object) -> str | None:
    """A temporal property in its port form: an aware datetime, or ISO-8601 text with an offset, as UTC ISO text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"property {name!r} is a point in time; {value!r} is not ISO-8601") from None
    if not isinstance(value, datetime):
        raise ValueError(f"property {name!r} is a point in time, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"property {name!r} is a naive datetime; pass an aware (UTC) one")
    return value.astimezone(UTC).isoformat()


def content_hash(properties: Mapping[str, object]) -> str:
    """The hash reconciliation compares: sha256 of the canonical JSON of the stored properties."""
    canonical = json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeRef(_Record):
    """One node: its label and the value of its key property."""

    label: NodeLabel
    key: str = Field(min_length=1)


class GraphNode(_Record):
    """A node and its properties (already in their stored form; placeholders have none)."""

    label: NodeLabel
    key: str = Field(min_length=1)
    properties: dict[str, PropertyValue] = Field(default_factory=dict)

    @field_validator("properties", mode="before")
    @classmethod
    def _stored_form(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        stored = {
            name: point_in_time(name, item) if name in TEMPORAL_PROPERTIES else graph_value(name, item)
            for name, item in value.items()
        }
        return {name: item for name, item in stored.items() if item is not None}

    @model_validator(mode="after")
    def _no_reserved_names(self) -> Self:
        reserved = {USER_PROPERTY, HASH_PROPERTY, KEY_PROPERTY[self.label]} & set(self.properties)
        if reserved:
            raise ValueError(f"{self.label} {self.key}: properties may not be named {sorted(reserved)}")
        return self

    @property
    def ref(self) -> NodeRef:
        return NodeRef(label=self.label, key=self.key)

    @property
    def content_hash(self) -> str:
        return content_hash(self.properties)


class _Relationship(_Record):
    source: NodeRef
    type: EdgeType
    target: NodeRef

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        return edge_type(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _endpoints(self) -> Self:
        sources, targets = ENDPOINTS[self.type]
        if self.source.label not in sources or self.target.label not in targets:
            raise ValueError(
                f"{self.type} goes from {'/'.join(sorted(sources))} to {'/'.join(sorted(targets))}, "
                f"not from {self.source.label} to {self.target.label}"
            )
        if self.source == self.target:
            raise ValueError(f"{self.type} from {self.source.label} {self.source.key} to itself")
        return self


class EdgeKey(_Relationship):
    """One relationship's identity: at most one of each type from a source to a target."""


class GraphEdge(_Relationship):
    """A relationship with the properties of its runtime.knowledge_edges row."""

    strength: float = Field(1.0, ge=0, le=1)
    description: str | None = None
    source_conversation_id: str | None = None

    @property
    def key(self) -> EdgeKey:
        return EdgeKey(source=self.source, type=self.type, target=self.target)

    @property
    def properties(self) -> dict[str, PropertyValue]:
        """The stored properties (absent ones omitted, as Neo4j does)."""
        values = {
            "strength": self.strength,
            "description": self.description,
            "source_conversation_id": self.source_conversation_id,
        }
        return {name: value for name, value in values.items() if value is not None}

    @property
    def content_hash(self) -> str:
        return content_hash(self.properties)


class GraphBatch(_Record):
    """Changes for one user, applied in one transaction: edge deletes, node deletes, node upserts, edge upserts.

    Each entity appears at most once, with its final state, so a batch means the same whatever order the changes
    were collected in, and applying it again changes nothing. Deleting a node deletes its relationships; an
    upserted relationship whose ends do not exist yet creates them as placeholders (no properties, no hash) that
    the nodes' own upserts fill in.
    """

    upsert_nodes: tuple[GraphNode, ...] = ()
    upsert_edges: tuple[GraphEdge, ...] = ()
    delete_nodes: tuple[NodeRef, ...] = ()
    delete_edges: tuple[EdgeKey, ...] = ()

    @model_validator(mode="after")
    def _one_change_per_entity(self) -> Self:
        upserted = [node.ref for node in self.upsert_nodes]
        edges = [edge.key for edge in self.upsert_edges]
        deleted = set(self.delete_nodes)
        listed: list[tuple[str, list[Any]]] = [
            ("a node", upserted),
            ("a relationship", edges),
            ("a deleted node", list(self.delete_nodes)),
            ("a deleted relationship", list(self.delete_edges)),
        ]
        problems = [f"{what} listed twice" for what, items in listed if len(set(items)) != len(items)]
        problems += [f"{ref.label} {ref.key} both upserted and deleted" for ref in deleted.intersection(upserted)]
        problems += [
            f"{key.type} {key.source.key}->{key.target.key} both upserted and deleted"
            for key in set(self.delete_edges).intersection(edges)
        ]
        problems += [
            f"{key.type} {key.source.key}->{key.target.key} upserted while one of its nodes is deleted"
            for key in edges
            if key.source in deleted or key.target in deleted
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def __len__(self) -> int:
        return len(self.upsert_nodes) + len(self.upsert_edges) + len(self.delete_nodes) + len(self.delete_edges)

    def check_user(self, user_id: str) -> None:
        """A User node's key is its user's id: a batch that upserts or deletes another user is refused."""
        for ref in [node.ref for node in self.upsert_nodes] + list(self.delete_nodes):
            if ref.label is NodeLabel.USER and ref.key != user_id:
                raise GraphWriteRefused(f"graph batch of user {user_id} names the User node of {ref.key}; refused")


class Subgraph(_Record):
    """A neighbourhood: nodes sorted by (label, key), edges by (source, type, target)."""

    nodes: tuple[GraphNode, ...] = ()
    edges: tuple[GraphEdge, ...] = ()

    @classmethod
    def of(cls, nodes: list[GraphNode], edges: list[GraphEdge]) -> Subgraph:
        def edge_order(edge: GraphEdge) -> tuple[str, ...]:
            return edge.source.label, edge.source.key, edge.type, edge.target.label, edge.target.key

        return cls(
            nodes=tuple(sorted(nodes, key=lambda n: (n.label, n.key))), edges=tuple(sorted(edges, key=edge_order))
        )


class WeightedEdge(_Record):
    """An undirected edge of a user's concept graph (concept ids, a < b) and its weight."""

    a: str
    b: str
    weight: float


class GraphCounts(_Record):
    """How many nodes per label and relationships per type a user has in the store (zeros included)."""

    nodes: dict[NodeLabel, int]
    edges: dict[EdgeType, int]

    @classmethod
    def of(cls, nodes: Mapping[str, int], edges: Mapping[str, int]) -> GraphCounts:
        return cls(
            nodes={label: int(nodes.get(label, 0)) for label in NodeLabel},
            edges={kind: int(edges.get(kind, 0)) for kind in EDGE_TYPES},
        )


def concept_weights(direct: list[tuple[str, str, float]], shared: list[tuple[str, str, float]]) -> list[WeightedEdge]:
    """The concept graph from the two parts both backends compute: relationships between two concepts, and memory
    units related to both. Pairs are ordered here (a < b in Python's order), so backends' collations never matter."""
    weights: dict[tuple[str, str], float] = {}
    for a, b, weight in [*direct, *shared]:
        pair = (a, b) if a < b else (b, a)
        weights[pair] = weights.get(pair, 0.0) + float(weight)
    return [WeightedEdge(a=a, b=b, weight=weight) for (a, b), weight in sorted(weights.items())]


def node_from_row(label: NodeLabel, row: Mapping[str, Any], user_id: str) -> GraphNode:
    """The node of a Postgres row (a record's dict or an asyncpg record): its key and the columns NODE_COLUMNS
    names. The row must be the user's: a dispatcher that mixed users up fails here, before any write."""
    if row.get("user_id") != user_id:
        raise GraphWriteRefused(f"{label} row {row.get(ROW_KEY_COLUMN[label])} is not user {user_id}'s; refused")
    properties = {column: row[column] for column in NODE_COLUMNS[label] if column in row}
    return GraphNode(label=label, key=str(row[ROW_KEY_COLUMN[label]]), properties=properties)


class GraphStore(Protocol):
    """The port. Every method takes the user id and touches only that user's nodes and relationships."""

    backend: str
    """'postgres' or 'neo4j', for logs and `doctor`."""

    async def apply(self, user_id: str, batch: GraphBatch) -> None:
        """Apply one user's changes in one transaction; applying the same batch again changes nothing.
        Raises GraphWriteRefused (a key that belongs to another user) or GraphStoreUnavailable."""
        ...

    async def delete_user(self, user_id: str) -> int:
        """Remove every node of the user and their relationships; returns how many nodes went."""
        ...

    async def neighbourhood(self, user_id: str, node: NodeRef, depth: int = 1) -> Subgraph:
        """The nodes within `depth` hops of `node` (either direction) and the relationships on those paths;
        empty when the user has no such node."""
        ...

    async def edges_from(self, user_id: str, sources: Sequence[NodeRef]) -> set[EdgeKey]:
        """The identities of the relationships leaving these nodes, in one read: what the dispatcher compares with
        Postgres to find the relationships a batch must delete (a neighbourhood per node cost a transaction and two
        queries each, and read nodes nobody looked at)."""
        ...

    async def concept_graph(self, user_id: str) -> list[WeightedEdge]:
        """The user's concepts as a weighted, undirected edge list, for community detection: each relationship
        between two concepts adds its strength; each memory unit related to both adds the smaller of its two
        strengths (its strongest relationship to each)."""
        ...

    async def counts(self, user_id: str) -> GraphCounts:
        """Nodes per label and relationships per type, for reconciliation and `forget-user`'s proof."""
        ...

    async def held_users(self) -> list[str]:
        """Every user id the store holds a node or relationship of, sorted. The one read that is not one user's:
        reconcile compares it with Postgres to find what is left of users Postgres no longer has (orphans, which
        `delete_user` then removes)."""
        ...

    async def node_hashes(self, user_id: str, label: NodeLabel) -> dict[str, str | None]:
        """key -> content hash of every node of the label (None for a placeholder)."""
        ...

    async def edge_hashes(self, user_id: str, kind: EdgeType) -> dict[EdgeKey, str]:
        """identity -> content hash of every relationship of the type."""
        ...

    async def close(self) -> None:
        """Release what the adapter opened (not what it was given)."""
        ...
