"""The embedded GraphStore (the default when NEO4J_URI is unset): nodes in runtime.graph_nodes, relationships in
runtime.knowledge_edges, traversal by recursive SQL (migration 0006).

knowledge_edges is also where ingestion writes the truth of a relationship, so a row there is in the graph while
its `in_graph` flag is set, and who owns the row depends on its type: a row of the ingestion vocabulary
(RelationshipType) is the truth's, and removing it from the graph only clears the flag; a structural row
(StructuralRelationshipType: MENTIONS, DERIVED_FROM, HIGHLIGHTS and the rest, whose truth is in other rows) exists
only for the graph and is deleted with it. Upserting a relationship writes its values into the row (send the current
ones, read from Postgres when the change is applied). Every statement filters on the user id.

Values travel as parameters; batches as one JSON document each, unpacked by jsonb_to_recordset, so a batch of any
size is one round trip per kind of change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from core.vocabulary import NodeLabel, StructuralRelationshipType
from store.graph.base import (
    MAX_DEPTH,
    EdgeKey,
    EdgeType,
    GraphBatch,
    GraphCounts,
    GraphEdge,
    GraphNode,
    GraphStoreUnavailable,
    GraphWriteRefused,
    NodeRef,
    Subgraph,
    WeightedEdge,
    concept_weights,
    edge_type,
)
from store.repos._base import row_count

_OWNED_ELSEWHERE = """
SELECT n.label, n.node_key FROM runtime.graph_nodes AS n
JOIN unnest($2::text[], $3::text[]) AS r (label, node_key) ON n.label = r.label AND n.node_key = r.node_key
WHERE n.user_id <> $1
"""

GRAPH_OWNED = ", ".join(f"'{kind.value}'" for kind in StructuralRelationshipType)
"""The relationship types whose knowledge_edges rows exist only for the graph (SQL text from the enum's words)."""


def _unlink(matches: str, source: str = "") -> str:
    """Remove relationships from the graph in one statement: delete the graph's own rows, clear the flag of the
    truth's."""
    using, frm = (f"USING {source}", f"FROM {source}") if source else ("", "")
    return f"""
WITH dropped AS (
    DELETE FROM runtime.knowledge_edges AS e {using}
    WHERE e.user_id = $1 AND e.relationship_type IN ({GRAPH_OWNED}) AND {matches}
)
UPDATE runtime.knowledge_edges AS e SET in_graph = false {frm}
WHERE e.user_id = $1 AND e.in_graph AND e.relationship_type NOT IN ({GRAPH_OWNED}) AND {matches}
"""


_UNLINK_EDGES = _unlink(
    "e.source_id = r.source_id AND e.relationship_type = r.relationship_type AND e.target_id = r.target_id "
    "AND e.source_type = r.source_type AND e.target_type = r.target_type",
    "jsonb_to_recordset($2::text::jsonb) AS r (source_type text, source_id text, relationship_type text, "
    "target_type text, target_id text)",
)

_DELETE_NODES = """
DELETE FROM runtime.graph_nodes AS n USING unnest($2::text[], $3::text[]) AS r (label, node_key)
WHERE n.user_id = $1 AND n.label = r.label AND n.node_key = r.node_key
"""

_UNLINK_TOUCHING = _unlink(
    "((e.source_type = r.label AND e.source_id = r.node_key) "
    "OR (e.target_type = r.label AND e.target_id = r.node_key))",
    "unnest($2::text[], $3::text[]) AS r (label, node_key)",
)

_UNLINK_USER = _unlink("true")

_UPSERT_NODES = """
INSERT INTO runtime.graph_nodes AS n (label, node_key, user_id, properties, content_hash)
SELECT r.label, r.node_key, $1, r.properties, r.content_hash
FROM jsonb_to_recordset($2::text::jsonb) AS r (label text, node_key text, properties jsonb, content_hash text)
ON CONFLICT (label, node_key) DO UPDATE
SET properties = EXCLUDED.properties, content_hash = EXCLUDED.content_hash, updated_at = now()
WHERE n.user_id = EXCLUDED.user_id AND n.content_hash IS DISTINCT FROM EXCLUDED.content_hash
"""

_PLACEHOLDERS = """
INSERT INTO runtime.graph_nodes (label, node_key, user_id)
SELECT DISTINCT r.label, r.node_key, $1 FROM unnest($2::text[], $3::text[]) AS r (label, node_key)
ON CONFLICT (label, node_key) DO NOTHING
"""

_UPSERT_EDGES = """
INSERT INTO runtime.knowledge_edges AS e (edge_id, user_id, source_id, source_type, target_id, target_type,
    relationship_type, strength, description, source_conversation_id, in_graph)
SELECT gen_random_uuid()::text, $1, r.source_id, r.source_type, r.target_id, r.target_type, r.relationship_type,
    r.strength, r.description, r.source_conversation_id, true
FROM jsonb_to_recordset($2::text::jsonb) AS r (source_type text, source_id text, relationship_type text,
    target_type text, target_id text, strength float8, description text, source_conversation_id text)
ON CONFLICT ON CONSTRAINT knowledge_edges_unique DO UPDATE
SET strength = EXCLUDED.strength, description = EXCLUDED.description,
    source_conversation_id = EXCLUDED.source_conversation_id, in_graph = true,
    updated_at = CASE WHEN (e.strength, e.description, e.source_conversation_id)
        IS DISTINCT FROM (EXCLUDED.strength, EXCLUDED.description, EXCLUDED.source_conversation_id)
        THEN now() ELSE e.updated_at END
WHERE NOT e.in_graph OR (e.strength, e.description, e.source_conversation_id)
    IS DISTINCT FROM (EXCLUDED.strength, EXCLUDED.description, EXCLUDED.source_conversation_id)
"""

_WALK = """
WITH RECURSIVE walk (label, node_key, depth) AS (
    SELECT n.label, n.node_key, 0 FROM runtime.graph_nodes AS n
    WHERE n.user_id = $1 AND n.label = $2 AND n.node_key = $3
  UNION
    SELECT step.label, step.node_key, w.depth + 1
    FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT e.target_type, e.target_id FROM runtime.knowledge_edges AS e
        WHERE e.user_id = $1 AND e.in_graph AND e.source_type = w.label AND e.source_id = w.node_key
      UNION ALL
        SELECT e.source_type, e.source_id FROM runtime.knowledge_edges AS e
        WHERE e.user_id = $1 AND e.in_graph AND e.target_type = w.label AND e.target_id = w.node_key
    ) AS step (label, node_key)
    WHERE w.depth < $4
)
SELECT n.label, n.node_key, n.properties::text AS properties, w.depth
FROM (SELECT label, node_key, min(depth) AS depth FROM walk GROUP BY label, node_key) AS w
JOIN runtime.graph_nodes AS n ON n.label = w.label AND n.node_key = w.node_key AND n.user_id = $1
"""
"""Breadth first, either direction: each reached node with its distance (UNION drops repeats at one depth)."""

_EDGE_COLUMNS = (
    "e.source_type, e.source_id, e.relationship_type, e.target_type, e.target_id, e.strength, e.description, "
    "e.source_conversation_id"
)

_WALK_EDGES = f"""
SELECT {_EDGE_COLUMNS}
FROM unnest($2::text[], $3::text[], $4::int[]) AS s (label, node_key, depth)
JOIN runtime.knowledge_edges AS e
    ON e.user_id = $1 AND e.in_graph AND e.source_type = s.label AND e.source_id = s.node_key
JOIN unnest($2::text[], $3::text[], $4::int[]) AS t (label, node_key, depth)
    ON t.label = e.target_type AND t.node_key = e.target_id
WHERE least(s.depth, t.depth) < $5
"""
"""The relationships on the walked paths: both ends reached, one of them before the last step."""

_EDGES_FROM = """
SELECT e.source_type, e.source_id, e.relationship_type, e.target_type, e.target_id
FROM unnest($2::text[], $3::text[]) AS s (label, node_key)
JOIN runtime.knowledge_edges AS e
    ON e.user_id = $1 AND e.in_graph AND e.source_type = s.label AND e.source_id = s.node_key
"""

_CONCEPT_DIRECT = """
SELECT e.source_id AS a, e.target_id AS b, e.strength AS weight FROM runtime.knowledge_edges AS e
WHERE e.user_id = $1 AND e.in_graph AND e.source_type = 'Concept' AND e.target_type = 'Concept'
  AND e.relationship_type <> 'MERGED_INTO'
"""

_CONCEPT_SHARED = """
WITH links AS (
    SELECT CASE WHEN e.source_type = 'MemoryUnit' THEN e.source_id ELSE e.target_id END AS unit,
           CASE WHEN e.source_type = 'Concept' THEN e.source_id ELSE e.target_id END AS concept,
           max(e.strength) AS strength
    FROM runtime.knowledge_edges AS e
    WHERE e.user_id = $1 AND e.in_graph
      AND ((e.source_type = 'MemoryUnit' AND e.target_type = 'Concept')
        OR (e.source_type = 'Concept' AND e.target_type = 'MemoryUnit'))
    GROUP BY 1, 2
)
SELECT x.concept AS a, y.concept AS b, sum(least(x.strength, y.strength)) AS weight
FROM links AS x JOIN links AS y ON x.unit = y.unit AND x.concept < y.concept
GROUP BY x.concept, y.concept
"""


class PostgresGraphStore:
    """A GraphStore in the runtime schema of the system-of-record database, on the caller's pool."""

    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _errors(self, user_id: str) -> AsyncIterator[None]:
        try:
            yield
        except asyncpg.ForeignKeyViolationError:
            raise GraphWriteRefused(
                f"graph write of user {user_id} refused: the user has no row in public.users (deleted?)"
            ) from None
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise GraphStoreUnavailable(f"graph store (Postgres) unavailable: {reason}") from None

    async def apply(self, user_id: str, batch: GraphBatch) -> None:
        batch.check_user(user_id)
        if not len(batch):
            return
        async with self._errors(user_id), self._pool.acquire() as conn, conn.transaction():
            written = [node.ref for node in batch.upsert_nodes]
            ends = [ref for edge in batch.upsert_edges for ref in (edge.source, edge.target)]
            await _refuse_foreign(conn, user_id, written + ends)
            if batch.delete_edges:
                keys = json.dumps([_edge_row(key) for key in batch.delete_edges])
                await conn.execute(_UNLINK_EDGES, user_id, keys)
            if batch.delete_nodes:
                await conn.execute(_DELETE_NODES, user_id, *_columns(batch.delete_nodes))
                await conn.execute(_UNLINK_TOUCHING, user_id, *_columns(batch.delete_nodes))
            if batch.upsert_nodes:
                rows = [
                    {"label": n.label, "node_key": n.key, "properties": n.properties, "content_hash": n.content_hash}
                    for n in batch.upsert_nodes
                ]
                await conn.execute(_UPSERT_NODES, user_id, json.dumps(rows))
            if batch.upsert_edges:
                await conn.execute(_PLACEHOLDERS, user_id, *_columns(ends))
                edges = [{**_edge_row(edge.key), **edge.properties} for edge in batch.upsert_edges]
                await conn.execute(_UPSERT_EDGES, user_id, json.dumps(edges))

    async def delete_user(self, user_id: str) -> int:
        async with self._errors(user_id), self._pool.acquire() as conn, conn.transaction():
            deleted = row_count(await conn.execute("DELETE FROM runtime.graph_nodes WHERE user_id = $1", user_id))
            await conn.execute(_UNLINK_USER, user_id)
        return deleted

    async def neighbourhood(self, user_id: str, node: NodeRef, depth: int = 1) -> Subgraph:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"neighbourhood depth must be 0..{MAX_DEPTH}, not {depth}")
        async with (
            self._errors(user_id),
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            reached = await conn.fetch(_WALK, user_id, node.label.value, node.key, depth)
            walked = ([r["label"] for r in reached], [r["node_key"] for r in reached], [r["depth"] for r in reached])
            edges = await conn.fetch(_WALK_EDGES, user_id, *walked, depth) if reached else []
        nodes = [
            GraphNode(label=r["label"], key=r["node_key"], properties=json.loads(r["properties"])) for r in reached
        ]
        return Subgraph.of(nodes, [_edge(r) for r in edges])

    async def edges_from(self, user_id: str, sources: Sequence[NodeRef]) -> set[EdgeKey]:
        if not sources:
            return set()
        async with self._errors(user_id):
            rows = await self._pool.fetch(
                _EDGES_FROM, user_id, [ref.label.value for ref in sources], [ref.key for ref in sources]
            )
        return {
            EdgeKey(
                source=NodeRef(label=r["source_type"], key=r["source_id"]),
                type=edge_type(r["relationship_type"]),
                target=NodeRef(label=r["target_type"], key=r["target_id"]),
            )
            for r in rows
        }

    async def concept_graph(self, user_id: str) -> list[WeightedEdge]:
        async with self._errors(user_id), self._pool.acquire() as conn, conn.transaction(readonly=True):
            direct = await conn.fetch(_CONCEPT_DIRECT, user_id)
            shared = await conn.fetch(_CONCEPT_SHARED, user_id)
        return concept_weights(
            [(r["a"], r["b"], r["weight"]) for r in direct], [(r["a"], r["b"], r["weight"]) for r in shared]
        )

    async def counts(self, user_id: str) -> GraphCounts:
        async with self._errors(user_id), self._pool.acquire() as conn, conn.transaction(readonly=True):
            nodes = await conn.fetch(
                "SELECT label, count(*) AS n FROM runtime.graph_nodes WHERE user_id = $1 GROUP BY label", user_id
            )
            edges = await conn.fetch(
                "SELECT relationship_type, count(*) AS n FROM runtime.knowledge_edges "
                "WHERE user_id = $1 AND in_graph GROUP BY relationship_type",
                user_id,
            )
        return GraphCounts.of({r["label"]: r["n"] for r in nodes}, {r["relationship_type"]: r["n"] for r in edges})

    async def held_users(self) -> list[str]:
        async with self._errors("(all users)"):
            rows = await self._pool.fetch(
                "SELECT user_id FROM runtime.graph_nodes UNION "
                "SELECT user_id FROM runtime.knowledge_edges WHERE in_graph ORDER BY user_id"
            )
        return [row["user_id"] for row in rows]

    async def node_hashes(self, user_id: str, label: NodeLabel) -> dict[str, str | None]:
        async with self._errors(user_id):
            rows = await self._pool.fetch(
                "SELECT node_key, content_hash FROM runtime.graph_nodes WHERE user_id = $1 AND label = $2",
                user_id,
                NodeLabel(label).value,
            )
        return {r["node_key"]: r["content_hash"] for r in rows}

    async def edge_hashes(self, user_id: str, kind: EdgeType) -> dict[EdgeKey, str]:
        async with self._errors(user_id):
            rows = await self._pool.fetch(
                f"SELECT {_EDGE_COLUMNS} FROM runtime.knowledge_edges AS e "
                "WHERE e.user_id = $1 AND e.relationship_type = $2 AND e.in_graph",
                user_id,
                edge_type(kind).value,
            )
        return {edge.key: edge.content_hash for edge in map(_edge, rows)}

    async def close(self) -> None:
        """Nothing to release: the pool is the caller's."""


async def _refuse_foreign(conn: asyncpg.Connection, user_id: str, refs: list[NodeRef]) -> None:
    """A key that another user's node already has: refused before anything is written."""
    if not refs:
        return
    taken = await conn.fetch(_OWNED_ELSEWHERE, user_id, *_columns(refs))
    if taken:
        names = ", ".join(f"{r['label']} {r['node_key']}" for r in taken[:5])
        raise GraphWriteRefused(f"graph write of user {user_id} refused: {names} belong to another user")


def _columns(refs: Iterable[NodeRef]) -> tuple[list[str], list[str]]:
    pairs = [(ref.label.value, ref.key) for ref in refs]
    return [label for label, _ in pairs], [key for _, key in pairs]


def _edge_row(key: EdgeKey) -> dict[str, Any]:
    return {
        "source_type": key.source.label.value,
        "source_id": key.source.key,
        "relationship_type": key.type.value,
        "target_type": key.target.label.value,
        "target_id": key.target.key,
    }


def _edge(row: asyncpg.Record) -> GraphEdge:
    return GraphEdge(
        source=NodeRef(label=row["source_type"], key=row["source_id"]),
        type=edge_type(row["relationship_type"]),
        target=NodeRef(label=row["target_type"], key=row["target_id"]),
        strength=row["strength"],
        description=row["description"],
        source_conversation_id=row["source_conversation_id"],
    )
