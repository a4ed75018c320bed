"""Every Cypher statement the Neo4j adapter runs; nothing else in Orrery writes Cypher.

Values always travel as parameters. The only words put into a statement's text are labels, relationship types and
key property names, each from the enums of core.vocabulary and checked by `_label` / `_type` right before use, so a
string from a model or a row can never become Cypher. Every statement filters on userId but `held_users`, which
lists the users themselves.

Each statement is a `Statement`: its text and the parameters it takes. The adapter sends it through `bind`, which
refuses any other set of values, and tests/store/graph/test_cypher_lint.py has Neo4j's own Cypher front-end
(`@neo4j-cypher/language-support`) check every statement this module can build against those parameters and the
graph's labels, types, properties and relationship endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.vocabulary import NodeLabel
from store.graph.base import KEY_PROPERTY, EdgeType, edge_type


@dataclass(frozen=True)
class Statement:
    """A Cypher statement and the names of the parameters it takes."""

    text: str
    parameters: frozenset[str] = frozenset()

    def bind(self, **values: Any) -> tuple[str, dict[str, Any]]:
        """(text, parameters) for the driver: values for exactly the statement's parameters, or ValueError."""
        if set(values) != self.parameters:
            raise ValueError(
                f"Cypher statement takes {sorted(self.parameters)}, not {sorted(values)}: {self.text[:80]}"
            )
        return self.text, values


def _statement(text: str, *parameters: str) -> Statement:
    return Statement(text, frozenset(parameters))


_SCHEMA_TEXT = (
    "CREATE CONSTRAINT user_userId_unique IF NOT EXISTS FOR (n:User) REQUIRE n.userId IS UNIQUE",
    "CREATE CONSTRAINT memoryunit_muid_unique IF NOT EXISTS FOR (n:MemoryUnit) REQUIRE n.muid IS UNIQUE",
    "CREATE CONSTRAINT concept_id_unique IF NOT EXISTS FOR (n:Concept) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT derivedartifact_id_unique IF NOT EXISTS FOR (n:DerivedArtifact) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT community_community_id_unique IF NOT EXISTS FOR (n:Community) REQUIRE n.community_id IS UNIQUE",
    "CREATE INDEX memoryunit_userId_idx IF NOT EXISTS FOR (n:MemoryUnit) ON (n.userId)",
    "CREATE INDEX concept_userId_idx IF NOT EXISTS FOR (n:Concept) ON (n.userId)",
    "CREATE INDEX derivedartifact_userId_idx IF NOT EXISTS FOR (n:DerivedArtifact) ON (n.userId)",
    "CREATE INDEX community_userId_idx IF NOT EXISTS FOR (n:Community) ON (n.userId)",
    "CREATE INDEX memoryunit_creation_ts_idx IF NOT EXISTS FOR (n:MemoryUnit) ON (n.creation_ts)",
    "CREATE INDEX concept_name_idx IF NOT EXISTS FOR (n:Concept) ON (n.name)",
    "CREATE INDEX concept_type_idx IF NOT EXISTS FOR (n:Concept) ON (n.type)",
    "CREATE INDEX concept_status_idx IF NOT EXISTS FOR (n:Concept) ON (n.status)",
)
SCHEMA: tuple[Statement, ...] = tuple(Statement(text) for text in _SCHEMA_TEXT)
"""The seed's V9.7 schema (seed 000, Part 2), statement for statement; tests/store/graph/test_cypher.py compares."""

ADDED_SCHEMA: tuple[Statement, ...] = (
    Statement("CREATE CONSTRAINT revision_id_unique IF NOT EXISTS FOR (n:Revision) REQUIRE n.id IS UNIQUE"),
    Statement("CREATE INDEX revision_userId_idx IF NOT EXISTS FOR (n:Revision) ON (n.userId)"),
)
"""Orrery's additions to the seed's schema, in its style: the Revision label (memory history) keyed like the others."""

RETIRED_SHAPES: tuple[tuple[NodeLabel, str, NodeLabel], ...] = tuple(
    (source, "HIGHLIGHTS", target)
    for source in (NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT)
    for target in (NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT)
)
"""Relationships a store written by an earlier Orrery may still hold though the vocabulary no longer has them
(ingestion's HIGHLIGHTS joined memory units and concepts either way): what RETIRED removes."""

RETIRED: tuple[Statement, ...] = (
    _statement(
        "MATCH (a)-[r:HIGHLIGHTS]->() WHERE NOT a:DerivedArtifact WITH r LIMIT $chunk DELETE r "
        "RETURN count(*) AS deleted",
        "chunk",
    ),
)
"""Relationships an earlier Orrery wrote that its vocabulary no longer has, deleted at most $chunk at a time when
the adapter connects (for every user, like the schema): HIGHLIGHTS from a memory unit to a concept, which ingestion
calls IS_ABOUT since migration 0023 (HIGHLIGHTS now leaves artifacts only). The migration queued every memory unit
that had one for the graph, so the dispatcher writes its IS_ABOUT relationships from Postgres."""

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _word(value: str) -> str:
    if not _WORD.match(value):
        raise ValueError(f"{value!r} cannot be put into Cypher text")
    return value


def _label(label: NodeLabel | str) -> str:
    return _word(NodeLabel(label).value)


def _type(kind: EdgeType | str) -> str:
    return _word(edge_type(str(kind)).value)


def _key(label: NodeLabel | str) -> str:
    return _word(KEY_PROPERTY[NodeLabel(label)])


def _node(var: str, label: NodeLabel | str, key: str) -> str:
    """A node pattern on the label's unique key and the user: MERGE on it either finds the user's node or creates
    it, and another user's node with that key makes the create break the seed's uniqueness constraint."""
    if NodeLabel(label) is NodeLabel.USER:
        return f"({var}:User {{userId: $userId}})"
    return f"({var}:{_label(label)} {{{_key(label)}: {key}, userId: $userId}})"


def upsert_nodes(label: NodeLabel) -> Statement:
    """$rows: [{key, properties}], properties complete (key, userId and content_hash included): SET replaces."""
    return _statement(
        f"UNWIND $rows AS row MERGE {_node('n', label, 'row.key')} SET n = row.properties", "rows", "userId"
    )


def upsert_edges(source: NodeLabel, kind: EdgeType, target: NodeLabel) -> Statement:
    """$rows: [{source, target, properties}]; missing ends are created as placeholders (key and userId only)."""
    return _statement(
        f"UNWIND $rows AS row MERGE {_node('a', source, 'row.source')} MERGE {_node('b', target, 'row.target')} "
        f"MERGE (a)-[r:{_type(kind)}]->(b) SET r = row.properties",
        "rows",
        "userId",
    )


def delete_edges(source: NodeLabel, kind: EdgeType, target: NodeLabel) -> Statement:
    """$rows: [{source, target}]. The ends are taken out of the row before the MATCH: Neo4j's linter reads a map
    lookup inside a MATCH pattern's properties as a property of the node (tests/store/graph/test_cypher_lint.py)."""
    return _statement(
        f"UNWIND $rows AS row WITH row.source AS source, row.target AS target "
        f"MATCH {_node('a', source, 'source')}-[r:{_type(kind)}]->{_node('b', target, 'target')} DELETE r",
        "rows",
        "userId",
    )


def delete_nodes(label: NodeLabel) -> Statement:
    """$keys: [key]; the nodes' relationships go with them."""
    return _statement(
        f"UNWIND $keys AS key MATCH (n:{_label(label)} {{{_key(label)}: key}}) WHERE n.userId = $userId "
        "DETACH DELETE n",
        "keys",
        "userId",
    )


def delete_user_chunk(label: NodeLabel) -> Statement:
    """At most $chunk of the user's nodes of the label, so a large user is deleted in bounded transactions."""
    return _statement(
        f"MATCH (n:{_label(label)}) WHERE n.userId = $userId WITH n LIMIT $chunk DETACH DELETE n "
        "RETURN count(*) AS deleted",
        "userId",
        "chunk",
    )


def held_users(label: NodeLabel) -> Statement:
    """The user ids of the label's nodes: the one statement not filtered on a user, since it looks for users whose
    nodes are left over after Postgres deleted them (reconcile's orphans)."""
    return _statement(f"MATCH (n:{_label(label)}) WHERE n.userId IS NOT NULL RETURN DISTINCT n.userId AS userId")


def start_node(label: NodeLabel) -> Statement:
    return _statement(
        f"MATCH (n:{_label(label)} {{{_key(label)}: $key}}) WHERE n.userId = $userId "
        "RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS properties",
        "key",
        "userId",
    )


EXPAND = _statement(
    "MATCH (n)-[r]-(m) WHERE elementId(n) IN $frontier AND n.userId = $userId AND m.userId = $userId "
    "AND type(r) IN $types AND any(l IN labels(m) WHERE l IN $labels) "
    "RETURN elementId(n) AS from_id, elementId(m) AS id, labels(m) AS labels, properties(m) AS properties, "
    "elementId(r) AS rel_id, type(r) AS rel_type, startNode(r) = n AS outgoing, properties(r) AS rel_properties",
    "frontier",
    "userId",
    "types",
    "labels",
)
"""One breadth-first step: the relationships of the frontier's nodes and the user's nodes at their other end."""

CONCEPT_DIRECT = _statement(
    "MATCH (a:Concept)-[r]-(b:Concept) WHERE a.userId = $userId AND b.userId = $userId AND a.id < b.id "
    "AND type(r) IN $types RETURN a.id AS a, b.id AS b, sum(r.strength) AS weight",
    "userId",
    "types",
)

CONCEPT_SHARED = _statement(
    "MATCH (a:Concept)-[ra]-(m:MemoryUnit)-[rb]-(b:Concept) WHERE m.userId = $userId AND a.userId = $userId "
    "AND b.userId = $userId AND a.id < b.id AND type(ra) IN $types AND type(rb) IN $types "
    "WITH a, b, m, max(ra.strength) AS sa, max(rb.strength) AS sb "
    "RETURN a.id AS a, b.id AS b, sum(CASE WHEN sa < sb THEN sa ELSE sb END) AS weight",
    "userId",
    "types",
)


def edges_from(label: NodeLabel) -> Statement:
    """The relationships leaving the label's nodes with these keys: the target's labels and every key property a
    label may use, so the caller picks the target's key by its label."""
    return _statement(
        f"UNWIND $keys AS key MATCH (a:{_label(label)} {{{_key(label)}: key}})-[r]->(b) "
        "WHERE a.userId = $userId AND b.userId = $userId AND type(r) IN $types "
        "RETURN key AS source, type(r) AS rel_type, labels(b) AS labels, "
        "{userId: b.userId, muid: b.muid, id: b.id, community_id: b.community_id} AS target_keys",
        "keys",
        "userId",
        "types",
    )


def count_nodes(label: NodeLabel) -> Statement:
    return _statement(f"MATCH (n:{_label(label)}) WHERE n.userId = $userId RETURN count(n) AS n", "userId")


def count_edges_from(label: NodeLabel) -> Statement:
    return _statement(
        f"MATCH (a:{_label(label)})-[r]->(b) WHERE a.userId = $userId AND b.userId = $userId AND type(r) IN $types "
        "RETURN type(r) AS rel_type, count(r) AS n",
        "userId",
        "types",
    )


def node_hashes(label: NodeLabel) -> Statement:
    return _statement(
        f"MATCH (n:{_label(label)}) WHERE n.userId = $userId RETURN n.{_key(label)} AS key, n.content_hash AS hash",
        "userId",
    )


def edges_between(source: NodeLabel, kind: EdgeType, target: NodeLabel) -> Statement:
    return _statement(
        f"MATCH (a:{_label(source)})-[r:{_type(kind)}]->(b:{_label(target)}) "
        f"WHERE a.userId = $userId AND b.userId = $userId "
        f"RETURN a.{_key(source)} AS source, b.{_key(target)} AS target, properties(r) AS properties",
        "userId",
    )
