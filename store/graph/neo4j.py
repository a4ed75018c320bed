"""The Neo4j adapter of the GraphStore port (used when NEO4J_URI is set), on the official async driver.

On connect it applies the seed's V9.7 schema (constraints and indexes, IF NOT EXISTS). Writes are parameterized
MERGEs on the seed's unique keys, so a replay finds what the first run made; the Cypher text is in
store/graph/cypher.py. Changes of one batch run in one managed transaction, which the driver retries on Neo4j's
transient errors: safe, because the batch is idempotent.

Points in time (base.TEMPORAL_PROPERTIES) are written as aware Python datetimes, which the driver sends as Neo4j
DateTime values, so `creation_ts` and the rest order and compare as instants in Cypher; read back, they are turned
into the port's ISO text again, so nodes and hashes are the same whichever backend holds them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j.exceptions import (
    AuthError,
    ConstraintError,
    ServiceUnavailable,
    SessionExpired,
)
from neo4j.exceptions import TransientError as Neo4jTransientError
from neo4j.time import DateTime

from core.vocabulary import NodeLabel, StructuralRelationshipType
from store.graph import cypher
from store.graph.base import (
    EDGE_TYPES,
    ENDPOINTS,
    HASH_PROPERTY,
    KEY_PROPERTY,
    MAX_DEPTH,
    SOURCE_LABELS,
    TEMPORAL_PROPERTIES,
    USER_PROPERTY,
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

T = TypeVar("T")
E = TypeVar("E", EdgeKey, GraphEdge)

DELETE_CHUNK = 1000
"""Nodes per transaction when a user is deleted."""

_TYPES = [kind.value for kind in EDGE_TYPES]
_RELATING_TYPES = [kind.value for kind in EDGE_TYPES if kind is not StructuralRelationshipType.MERGED_INTO]
"""What weighs in the concept graph: a merge joins a concept that is gone, it does not relate two."""
_LABELS = [label.value for label in NodeLabel]


class Neo4jGraphStore:
    """A GraphStore on a Neo4j 5 server. Build it with `connect`; it owns its driver and closes it."""

    backend = "neo4j"

    def __init__(self, driver: AsyncDriver, *, where: str, database: str | None = None) -> None:
        self._driver = driver
        self._where = where
        self._database = database

    @classmethod
    async def connect(cls, uri: str, user: str, password: str | None, database: str | None = None) -> Neo4jGraphStore:
        """Reach the server and apply the schema, or raise GraphStoreUnavailable naming it."""
        store = cls(AsyncGraphDatabase.driver(uri, auth=(user, password or "")), where=uri, database=database)
        try:
            async with store._errors("connect"):
                await store._driver.verify_connectivity()
                await store.ensure_schema()
        except BaseException:
            await store.close()
            raise
        return store

    async def ensure_schema(self) -> None:
        """The seed's constraints and indexes and Orrery's additions; IF NOT EXISTS makes every start after the
        first a no-op. Then what an earlier Orrery wrote and the vocabulary no longer has goes (cypher.RETIRED), in
        bounded transactions; once gone, each start only looks."""
        for statement in (*cypher.SCHEMA, *cypher.ADDED_SCHEMA):
            text, parameters = statement.bind()
            await self._driver.execute_query(text, parameters, database_=self._database)
        for retired in cypher.RETIRED:
            text, parameters = retired.bind(chunk=DELETE_CHUNK)
            while True:
                records, _, _ = await self._driver.execute_query(text, parameters, database_=self._database)
                if not records or int(records[0]["deleted"]) == 0:
                    break

    @asynccontextmanager
    async def _errors(self, user_id: str) -> AsyncIterator[None]:
        try:
            yield
        except ConstraintError as exc:
            reason = str(exc.message or exc).splitlines()[0][:200]
            raise GraphWriteRefused(
                f"Neo4j refused a graph write of user {user_id}: a key belongs to another user's node ({reason})"
            ) from None
        except AuthError:
            raise GraphStoreUnavailable(
                f"Neo4j at {self._where} refused the credentials; check NEO4J_USER and NEO4J_PASSWORD"
            ) from None
        except (ServiceUnavailable, SessionExpired, Neo4jTransientError, OSError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise GraphStoreUnavailable(f"cannot reach Neo4j at {self._where}: {reason}") from None

    async def _write(self, user_id: str, work: Callable[[AsyncManagedTransaction], Awaitable[T]]) -> T:
        async with self._errors(user_id), self._driver.session(database=self._database) as session:
            return await session.execute_write(work)

    async def _read(self, user_id: str, work: Callable[[AsyncManagedTransaction], Awaitable[T]]) -> T:
        async with self._errors(user_id), self._driver.session(database=self._database) as session:
            return await session.execute_read(work)

    async def apply(self, user_id: str, batch: GraphBatch) -> None:
        batch.check_user(user_id)
        if not len(batch):
            return
        statements: list[tuple[str, dict[str, Any]]] = []
        for (source, kind, target), keys in _by_shape(batch.delete_edges).items():
            rows = [{"source": key.source.key, "target": key.target.key} for key in keys]
            statements.append(cypher.delete_edges(source, kind, target).bind(rows=rows, userId=user_id))
        deleted: dict[NodeLabel, list[str]] = defaultdict(list)
        for ref in batch.delete_nodes:
            deleted[ref.label].append(ref.key)
        statements += [cypher.delete_nodes(label).bind(keys=keys, userId=user_id) for label, keys in deleted.items()]
        upserted: dict[NodeLabel, list[dict[str, Any]]] = defaultdict(list)
        for node in batch.upsert_nodes:
            identity = {KEY_PROPERTY[node.label]: node.key, USER_PROPERTY: user_id, HASH_PROPERTY: node.content_hash}
            stored = {**stored_properties(node.properties), **identity}
            upserted[node.label].append({"key": node.key, "properties": stored})
        statements += [cypher.upsert_nodes(label).bind(rows=rows, userId=user_id) for label, rows in upserted.items()]
        for (source, kind, target), edges in _by_shape(batch.upsert_edges).items():
            edge_rows: list[dict[str, Any]] = [
                {"source": e.source.key, "target": e.target.key, "properties": {**e.properties, USER_PROPERTY: user_id}}
                for e in edges
            ]
            statements.append(cypher.upsert_edges(source, kind, target).bind(rows=edge_rows, userId=user_id))

        async def work(tx: AsyncManagedTransaction) -> None:
            for statement, parameters in statements:
                await (await tx.run(statement, parameters)).consume()

        await self._write(user_id, work)

    async def delete_user(self, user_id: str) -> int:
        total = 0
        for label in NodeLabel:
            statement = cypher.delete_user_chunk(label).bind(userId=user_id, chunk=DELETE_CHUNK)

            async def chunk(tx: AsyncManagedTransaction, statement: tuple[str, dict[str, Any]] = statement) -> int:
                record = await (await tx.run(*statement)).single()
                return int(record["deleted"]) if record is not None else 0

            while (deleted := await self._write(user_id, chunk)) > 0:
                total += deleted
        return total

    async def neighbourhood(self, user_id: str, node: NodeRef, depth: int = 1) -> Subgraph:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"neighbourhood depth must be 0..{MAX_DEPTH}, not {depth}")

        async def walk(tx: AsyncManagedTransaction) -> Subgraph:
            start = await (await tx.run(*cypher.start_node(node.label).bind(key=node.key, userId=user_id))).single()
            if start is None:
                return Subgraph()
            nodes = {start["id"]: _node(start["labels"], start["properties"])}
            edges: dict[str, Any] = {}
            frontier = [start["id"]]
            for _ in range(depth):
                step = cypher.EXPAND.bind(frontier=frontier, userId=user_id, types=_TYPES, labels=_LABELS)
                fresh: list[str] = []
                async for record in await tx.run(*step):
                    if record["id"] not in nodes:
                        nodes[record["id"]] = _node(record["labels"], record["properties"])
                        fresh.append(record["id"])
                    edges[record["rel_id"]] = record
                frontier = fresh
            found = []
            for r in edges.values():
                near, far = nodes[r["from_id"]].ref, nodes[r["id"]].ref
                source, target = (near, far) if r["outgoing"] else (far, near)
                found.append(_edge(source, r["rel_type"], target, r["rel_properties"]))
            return Subgraph.of(list(nodes.values()), found)

        return await self._read(user_id, walk)

    async def edges_from(self, user_id: str, sources: Sequence[NodeRef]) -> set[EdgeKey]:
        by_label: dict[NodeLabel, list[str]] = defaultdict(list)
        for ref in sources:
            by_label[ref.label].append(ref.key)

        async def read(tx: AsyncManagedTransaction) -> set[EdgeKey]:
            found: set[EdgeKey] = set()
            for label, keys in by_label.items():
                statement = cypher.edges_from(label).bind(keys=keys, userId=user_id, types=_TYPES)
                async for r in await tx.run(*statement):
                    target = next(NodeLabel(name) for name in r["labels"] if name in _LABELS)
                    found.add(
                        EdgeKey(
                            source=NodeRef(label=label, key=r["source"]),
                            type=edge_type(r["rel_type"]),
                            target=NodeRef(label=target, key=str(r["target_keys"][KEY_PROPERTY[target]])),
                        )
                    )
            return found

        return await self._read(user_id, read) if by_label else set()

    async def concept_graph(self, user_id: str) -> list[WeightedEdge]:
        async def read(tx: AsyncManagedTransaction) -> list[WeightedEdge]:
            parts = []
            for statement in (cypher.CONCEPT_DIRECT, cypher.CONCEPT_SHARED):
                result = await tx.run(*statement.bind(userId=user_id, types=_RELATING_TYPES))
                parts.append([(r["a"], r["b"], r["weight"]) async for r in result])
            return concept_weights(*parts)

        return await self._read(user_id, read)

    async def counts(self, user_id: str) -> GraphCounts:
        async def read(tx: AsyncManagedTransaction) -> GraphCounts:
            nodes: dict[str, int] = {}
            edges: dict[str, int] = defaultdict(int)
            for label in NodeLabel:
                record = await (await tx.run(*cypher.count_nodes(label).bind(userId=user_id))).single()
                nodes[label] = int(record["n"]) if record is not None else 0
            for label in SOURCE_LABELS:
                async for record in await tx.run(*cypher.count_edges_from(label).bind(userId=user_id, types=_TYPES)):
                    edges[record["rel_type"]] += int(record["n"])
            return GraphCounts.of(nodes, edges)

        return await self._read(user_id, read)

    async def held_users(self) -> list[str]:
        """Per label, through the label's userId index (relationships never outlive their nodes here)."""

        async def read(tx: AsyncManagedTransaction) -> set[str]:
            found: set[str] = set()
            for label in NodeLabel:
                found |= {str(record["userId"]) async for record in await tx.run(*cypher.held_users(label).bind())}
            return found

        return sorted(await self._read("(all users)", read))

    async def node_hashes(self, user_id: str, label: NodeLabel) -> dict[str, str | None]:
        async def read(tx: AsyncManagedTransaction) -> dict[str, str | None]:
            result = await tx.run(*cypher.node_hashes(label).bind(userId=user_id))
            return {str(record["key"]): record["hash"] async for record in result}

        return await self._read(user_id, read)

    async def edge_hashes(self, user_id: str, kind: EdgeType) -> dict[EdgeKey, str]:
        sources, targets = ENDPOINTS[kind]

        async def read(tx: AsyncManagedTransaction) -> dict[EdgeKey, str]:
            hashes: dict[EdgeKey, str] = {}
            for source in sorted(sources):
                for target in sorted(targets):
                    result = await tx.run(*cypher.edges_between(source, kind, target).bind(userId=user_id))
                    async for r in result:
                        a, b = NodeRef(label=source, key=str(r["source"])), NodeRef(label=target, key=str(r["target"]))
                        edge = _edge(a, kind, b, r["properties"])
                        hashes[edge.key] = edge.content_hash
            return hashes

        return await self._read(user_id, read)

    async def close(self) -> None:
        await self._driver.close()


def _by_shape(items: Iterable[E]) -> dict[tuple[NodeLabel, EdgeType, NodeLabel], list[E]]:
    """Relationships grouped by (source label, type, target label): one statement text per group."""
    groups: dict[tuple[NodeLabel, EdgeType, NodeLabel], list[E]] = defaultdict(list)
    for item in items:
        groups[(item.source.label, item.type, item.target.label)].append(item)
    return groups


def stored_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """A node's properties as Neo4j stores them: points in time as aware datetimes (the driver's DateTime)."""
    return {
        name: datetime.fromisoformat(value) if name in TEMPORAL_PROPERTIES and isinstance(value, str) else value
        for name, value in properties.items()
    }


def _node(labels: list[str], properties: dict[str, Any]) -> GraphNode:
    """A node read back: Neo4j's DateTime values become aware datetimes, which GraphNode turns into its ISO text."""
    label = next(NodeLabel(name) for name in labels if name in _LABELS)
    key = properties[KEY_PROPERTY[label]]
    hidden = {KEY_PROPERTY[label], USER_PROPERTY, HASH_PROPERTY}
    shown = {k: v.to_native() if isinstance(v, DateTime) else v for k, v in properties.items() if k not in hidden}
    return GraphNode(label=label, key=str(key), properties=shown)


def _edge(source: NodeRef, kind: str, target: NodeRef, properties: dict[str, Any]) -> GraphEdge:
    return GraphEdge(
        source=source,
        type=edge_type(kind),
        target=target,
        strength=properties.get("strength", 1.0),
        description=properties.get("description"),
        source_conversation_id=properties.get("source_conversation_id"),
    )
