"""What every GraphStore must do: one test class, run against each backend (SAQ-style).

Postgres always; Neo4j when NEO4J_URI (and NEO4J_USER / NEO4J_PASSWORD) is set, otherwise skipped with the reason.
Every test's ids carry a fresh suffix, so a shared Neo4j server holds no state from another test or run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from store.graph.base import (
    EDGE_TYPES,
    EdgeKey,
    EdgeType,
    GraphBatch,
    GraphCounts,
    GraphEdge,
    GraphNode,
    GraphStore,
    GraphWriteRefused,
    NodeRef,
    Subgraph,
)
from store.graph.postgres import PostgresGraphStore
from store.reconcile import Orphans, find_orphans, remove_orphans
from store.repos import users
from tests.store.orphans import delete_user_row_only

MU, CONCEPT = NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT
MENTIONS = StructuralRelationshipType.MENTIONS
HIGHLIGHTS = StructuralRelationshipType.HIGHLIGHTS
MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Memory:
    """One user's sample graph: two memory units, three concepts, a community, an artifact, two revisions and their
    links."""

    user_id: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def ref(self, name: str) -> NodeRef:
        return next(node.ref for node in self.nodes if node.key.startswith(name + "-"))

    def node(self, name: str) -> GraphNode:
        return next(node for node in self.nodes if node.key.startswith(name + "-"))

    def edge(self, source: str, kind: EdgeType, target: str) -> GraphEdge:
        return next(e for e in self.edges if (e.source, e.type, e.target) == (self.ref(source), kind, self.ref(target)))

    @property
    def batch(self) -> GraphBatch:
        return GraphBatch(upsert_nodes=self.nodes, upsert_edges=self.edges)


def make_memory(user_id: str) -> Memory:
    suffix = uuid.uuid4().hex[:12]

    def node(label: NodeLabel, handle: str, **properties: object) -> GraphNode:
        key = user_id if label is NodeLabel.USER else f"{handle}-{suffix}"
        return GraphNode(label=label, key=key, properties=properties)

    nodes = (
        node(NodeLabel.USER, "user", name="Maya", created_at=MOMENT),
        node(MU, "m1", title="Run with Emma", content="We ran 5k.", creation_ts=MOMENT, importance_score=7.5),
        node(MU, "m2", title="Berlin", content="Moving to Berlin.", creation_ts=MOMENT, sentiment_score=-0.25),
        node(CONCEPT, "c1", name="Emma", type="person", status="active", salience=0.9),
        node(CONCEPT, "c2", name="running", type="activity", status="active"),
        node(CONCEPT, "c3", name="Berlin", type="place", status="active"),
        node(NodeLabel.COMMUNITY, "k1", name="Family"),
        node(NodeLabel.DERIVED_ARTIFACT, "d1", artifact_type="insight_summary", title="Running as connection"),
        node(NodeLabel.REVISION, "r1", kind="retold", entity_type="MemoryUnit", created_at=MOMENT),
        node(NodeLabel.REVISION, "r2", kind="updated", entity_type="Concept", source_conversation_id="conv-2"),
    )
    refs = {n.key.split("-")[0] if n.label is not NodeLabel.USER else "user": n.ref for n in nodes}

    def edge(
        source: str,
        kind: EdgeType,
        target: str,
        strength: float,
        description: str | None = None,
        conv: str | None = None,
    ) -> GraphEdge:
        return GraphEdge(
            source=refs[source],
            type=kind,
            target=refs[target],
            strength=strength,
            description=description,
            source_conversation_id=conv,
        )

    edges = (
        edge("m1", MENTIONS, "c1", 0.9),
        edge("m1", MENTIONS, "c2", 0.6),
        edge("m2", MENTIONS, "c2", 0.8),
        edge("m2", RelationshipType.IS_ABOUT, "c3", 0.5, description="the move", conv="conv-2"),
        edge("c1", RelationshipType.RELATED_TO, "c2", 0.4, description="runs together"),
        edge("c2", RelationshipType.INSPIRES, "c1", 0.7),
        edge("c1", StructuralRelationshipType.BELONGS_TO_COMMUNITY, "k1", 1.0),
        edge("d1", StructuralRelationshipType.DERIVED_FROM, "m1", 1.0),
        edge("d1", StructuralRelationshipType.DERIVED_FROM, "c1", 1.0),
        edge("d1", HIGHLIGHTS, "m1", 1.0),  # beside DERIVED_FROM: two types join the same pair
        edge("d1", HIGHLIGHTS, "c2", 1.0),
        edge("r1", StructuralRelationshipType.REVISES, "m1", 1.0),
        edge("r2", StructuralRelationshipType.REVISES, "c1", 1.0),
        edge("m1", StructuralRelationshipType.AUTHORED_BY, "user", 1.0),
        edge("c2", StructuralRelationshipType.MERGED_INTO, "c1", 1.0),  # not a weight of the concept graph
    )
    return Memory(user_id, nodes, edges)


def expected_neighbourhood(memory: Memory, start: NodeRef, depth: int) -> tuple[set[NodeRef], set[EdgeKey]]:
    """The definition, computed the slow way: nodes within `depth` hops either way; edges with an end nearer."""
    distance = {start: 0}
    frontier = [start]
    for hop in range(1, depth + 1):
        reached = [
            other
            for ref in frontier
            for e in memory.edges
            for end, other in ((e.source, e.target), (e.target, e.source))
            if end == ref and other not in distance
        ]
        for ref in reached:
            distance.setdefault(ref, hop)
        frontier = list(dict.fromkeys(reached))
    edges = {
        e.key
        for e in memory.edges
        if e.source in distance and e.target in distance and min(distance[e.source], distance[e.target]) < depth
    }
    return set(distance), edges


async def snapshot(store: GraphStore, user_id: str) -> tuple[object, ...]:
    """Everything a user's graph answers, to compare before and after."""
    hashes = [await store.node_hashes(user_id, label) for label in NodeLabel]
    edge_hashes = [await store.edge_hashes(user_id, kind) for kind in EDGE_TYPES]
    return await store.counts(user_id), hashes, edge_hashes, await store.concept_graph(user_id)


@pytest.fixture(params=["postgres", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def backend(request: pytest.FixtureRequest) -> str:
    """Resolved before any database is made, so a skipped backend costs nothing."""
    if request.param == "neo4j" and not os.environ.get("NEO4J_URI"):
        pytest.skip("NEO4J_URI is not set: the Neo4j adapter is not exercised (no Neo4j server on this machine)")
    return str(request.param)


@pytest.fixture
async def graph(backend: str, pool: asyncpg.Pool) -> AsyncIterator[GraphStore]:
    if backend == "postgres":
        yield PostgresGraphStore(pool)
        return
    from store.graph.neo4j import Neo4jGraphStore

    store = await Neo4jGraphStore.connect(
        os.environ["NEO4J_URI"], os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD")
    )
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def two_users(graph: GraphStore, pool: asyncpg.Pool) -> AsyncIterator[tuple[Memory, Memory]]:
    """Users A and B (rows in Postgres too, which the embedded graph's keys reference), each with a sample graph."""
    memories = []
    for name in ("a", "b"):
        user_id = f"user-{name}-{uuid.uuid4().hex[:12]}"
        await users.create_user(pool, user_id, email=f"{user_id}@example.org")
        memories.append(make_memory(user_id))
    try:
        yield memories[0], memories[1]
    finally:
        for memory in memories:
            await graph.delete_user(memory.user_id)


class TestGraphStoreContract:
    async def test_replaying_a_batch_changes_nothing(self, graph: GraphStore, two_users: tuple[Memory, Memory]) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        first = await snapshot(graph, a.user_id), await graph.neighbourhood(a.user_id, a.ref("c2"), 2)
        await graph.apply(a.user_id, a.batch)
        assert (await snapshot(graph, a.user_id), await graph.neighbourhood(a.user_id, a.ref("c2"), 2)) == first
        assert await graph.counts(a.user_id) == GraphCounts.of(
            {"User": 1, "MemoryUnit": 2, "Concept": 3, "DerivedArtifact": 1, "Community": 1, "Revision": 2},
            {
                "MENTIONS": 3,
                "IS_ABOUT": 1,
                "HIGHLIGHTS": 2,
                "RELATED_TO": 1,
                "INSPIRES": 1,
                "BELONGS_TO_COMMUNITY": 1,
                "DERIVED_FROM": 2,
                "REVISES": 2,
                "AUTHORED_BY": 1,
                "MERGED_INTO": 1,
            },
        )

    async def test_a_replayed_mixed_batch_lands_in_the_same_state(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        renamed = GraphNode(label=CONCEPT, key=a.ref("c3").key, properties={"name": "Berlin, Germany"})
        change = GraphBatch(
            upsert_nodes=(renamed,),
            upsert_edges=(a.edge("m1", MENTIONS, "c2").model_copy(update={"strength": 0.2}),),
            delete_nodes=(a.ref("d1"),),
            delete_edges=(a.edge("c2", RelationshipType.INSPIRES, "c1").key,),
        )
        await graph.apply(a.user_id, change)
        once = await snapshot(graph, a.user_id)
        await graph.apply(a.user_id, change)
        assert await snapshot(graph, a.user_id) == once
        counts = await graph.counts(a.user_id)
        assert counts.nodes[NodeLabel.DERIVED_ARTIFACT] == 0
        assert counts.edges[StructuralRelationshipType.DERIVED_FROM] == counts.edges[RelationshipType.INSPIRES] == 0
        assert counts.edges[HIGHLIGHTS] == 0
        assert (await graph.node_hashes(a.user_id, CONCEPT))[renamed.key] == renamed.content_hash

    async def test_hashes_are_the_content_hash_of_what_was_written(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        for label in NodeLabel:
            expected = {n.key: n.content_hash for n in a.nodes if n.label is label}
            assert await graph.node_hashes(a.user_id, label) == expected
        for kind in EDGE_TYPES:
            assert await graph.edge_hashes(a.user_id, kind) == {
                e.key: e.content_hash for e in a.edges if e.type == kind
            }
        changed = a.node("m1").model_copy(update={"properties": {"title": "Run with Emma"}})
        await graph.apply(a.user_id, GraphBatch(upsert_nodes=(changed,)))
        assert (
            (await graph.node_hashes(a.user_id, MU))[changed.key] == changed.content_hash != a.node("m1").content_hash
        )
        (shown,) = (await graph.neighbourhood(a.user_id, changed.ref, 0)).nodes
        assert shown == changed  # the properties are replaced, not merged: content and the rest are gone

    async def test_nodes_read_back_as_written(self, graph: GraphStore, two_users: tuple[Memory, Memory]) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        for node in a.nodes:
            assert await graph.neighbourhood(a.user_id, node.ref, 0) == Subgraph(nodes=(node,))
        assert a.node("m1").properties["creation_ts"] == "2026-03-01T12:00:00+00:00"

    async def test_points_in_time_read_back_as_the_same_utc_instants(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        """Before the epoch, with microseconds, given in another offset: each reads back as the instant written."""
        a, _ = two_users
        moments = {
            "m1": datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
            "m2": datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        }
        nodes = [
            GraphNode(label=MU, key=a.ref(name).key, properties={"title": name, "creation_ts": at, "ingestion_ts": at})
            for name, at in moments.items()
        ]
        await graph.apply(a.user_id, GraphBatch(upsert_nodes=tuple(nodes)))
        for node, at in zip(nodes, moments.values(), strict=True):
            assert await graph.neighbourhood(a.user_id, node.ref, 0) == Subgraph(nodes=(node,))
            assert node.properties["creation_ts"] == at.astimezone(UTC).isoformat()
        assert await graph.node_hashes(a.user_id, MU) == {node.key: node.content_hash for node in nodes}

    async def test_neighbourhood_follows_either_direction_to_the_depth(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        one = await graph.neighbourhood(a.user_id, a.ref("c3"), 1)
        assert [n.ref for n in one.nodes] == [a.ref("c3"), a.ref("m2")]
        assert one.edges == (a.edge("m2", RelationshipType.IS_ABOUT, "c3"),)
        for node in a.nodes:
            for depth in range(4):
                found = await graph.neighbourhood(a.user_id, node.ref, depth)
                nodes, edges = expected_neighbourhood(a, node.ref, depth)
                assert {n.ref for n in found.nodes} == nodes, (node.key, depth)
                assert {e.key for e in found.edges} == edges, (node.key, depth)
                assert set(found.edges) <= set(a.edges)  # with their properties
        assert await graph.neighbourhood(a.user_id, NodeRef(label=CONCEPT, key="nowhere"), 2) == Subgraph()
        with pytest.raises(ValueError, match=r"depth must be 0\.\.5"):
            await graph.neighbourhood(a.user_id, a.ref("c1"), 6)

    async def test_edges_from_are_the_relationships_leaving_the_nodes(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, b = two_users
        await graph.apply(a.user_id, a.batch)
        await graph.apply(b.user_id, b.batch)
        for chosen in ([n.ref for n in a.nodes], [a.ref("m1")], [a.ref("c2"), a.ref("d1")], []):
            assert await graph.edges_from(a.user_id, chosen) == {e.key for e in a.edges if e.source in chosen}
        assert await graph.edges_from(b.user_id, [n.ref for n in a.nodes]) == set()  # another user's nodes: none
        assert await graph.edges_from(a.user_id, [NodeRef(label=CONCEPT, key="nowhere")]) == set()

    async def test_concept_graph_weights(self, graph: GraphStore, two_users: tuple[Memory, Memory]) -> None:
        """c1-c2: RELATED_TO 0.4 + INSPIRES 0.7 + m1 mentions both (min 0.9, 0.6) = 1.7; c2-c3: m2 (min 0.8, 0.5)."""
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        c1, c2, c3 = (a.ref(name).key for name in ("c1", "c2", "c3"))
        weights = await graph.concept_graph(a.user_id)
        assert [(w.a, w.b) for w in weights] == [(c1, c2), (c2, c3)]
        assert [w.weight for w in weights] == [pytest.approx(1.7), pytest.approx(0.5)]

    async def test_a_relationship_before_its_nodes_makes_placeholders(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        mention = a.edge("m1", MENTIONS, "c1")
        await graph.apply(a.user_id, GraphBatch(upsert_edges=(mention,)))
        assert await graph.node_hashes(a.user_id, MU) == {mention.source.key: None}
        assert await graph.neighbourhood(a.user_id, mention.source, 1) == Subgraph(
            nodes=(GraphNode(label=CONCEPT, key=mention.target.key), GraphNode(label=MU, key=mention.source.key)),
            edges=(mention,),
        )
        await graph.apply(a.user_id, GraphBatch(upsert_nodes=(a.node("m1"), a.node("c1"))))
        assert await graph.node_hashes(a.user_id, MU) == {mention.source.key: a.node("m1").content_hash}
        assert (await graph.counts(a.user_id)).edges[MENTIONS] == 1

    async def test_deleting_an_entity_deletes_its_relationships(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        await graph.apply(a.user_id, GraphBatch(delete_nodes=(a.ref("c2"),)))
        counts = await graph.counts(a.user_id)
        assert counts.nodes[CONCEPT] == 2
        assert counts.edges[MENTIONS] == 1
        assert counts.edges[RelationshipType.RELATED_TO] == counts.edges[RelationshipType.INSPIRES] == 0
        assert await graph.concept_graph(a.user_id) == []
        assert [n.ref for n in (await graph.neighbourhood(a.user_id, a.ref("m2"), 1)).nodes] == [
            a.ref("c3"),
            a.ref("m2"),
        ]
        await graph.apply(a.user_id, GraphBatch(upsert_nodes=(a.node("c2"),)))  # back, without its old links
        assert (await graph.neighbourhood(a.user_id, a.ref("c2"), 1)).edges == ()
        await graph.apply(a.user_id, GraphBatch(delete_nodes=(a.ref("c2"),)))
        await graph.apply(a.user_id, GraphBatch(delete_nodes=(a.ref("c2"),)))  # deleting again is harmless

    async def test_deleting_a_relationship_keeps_its_nodes(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        gone = a.edge("m2", MENTIONS, "c2").key
        await graph.apply(a.user_id, GraphBatch(delete_edges=(gone,)))
        assert gone not in await graph.edge_hashes(a.user_id, MENTIONS)
        assert (await graph.counts(a.user_id)).nodes[MU] == 2
        c1, c2 = a.ref("c1").key, a.ref("c2").key
        assert [(w.a, w.b) for w in await graph.concept_graph(a.user_id)] == [(c1, c2)]

    async def test_an_artifact_highlights_memory_units_and_concepts(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        """HIGHLIGHTS leaves an artifact for a memory unit or a concept (never another way): read back from either
        end with its properties, gone with the node it highlights while the artifact keeps its other relationships,
        and no weight of the concept graph."""
        a, _ = two_users
        await graph.apply(a.user_id, a.batch)
        unit, concept = a.edge("d1", HIGHLIGHTS, "m1"), a.edge("d1", HIGHLIGHTS, "c2")
        assert await graph.edge_hashes(a.user_id, HIGHLIGHTS) == {e.key: e.content_hash for e in (unit, concept)}
        assert concept in (await graph.neighbourhood(a.user_id, a.ref("c2"), 1)).edges
        assert {unit, concept} <= set((await graph.neighbourhood(a.user_id, a.ref("d1"), 1)).edges)
        c1, c2, c3 = (a.ref(name).key for name in ("c1", "c2", "c3"))
        assert [(w.a, w.b) for w in await graph.concept_graph(a.user_id)] == [(c1, c2), (c2, c3)]
        await graph.apply(a.user_id, GraphBatch(delete_nodes=(a.ref("m1"),)))
        assert await graph.edge_hashes(a.user_id, HIGHLIGHTS) == {concept.key: concept.content_hash}
        derived = await graph.edge_hashes(a.user_id, StructuralRelationshipType.DERIVED_FROM)
        assert set(derived) == {a.edge("d1", StructuralRelationshipType.DERIVED_FROM, "c1").key}
        await graph.apply(a.user_id, GraphBatch(delete_edges=(concept.key,)))
        assert (await graph.counts(a.user_id)).edges[HIGHLIGHTS] == 0
        assert (await graph.counts(a.user_id)).nodes[CONCEPT] == 3
        for wrong in ((a.ref("m2"), a.ref("c3")), (a.ref("d1"), a.ref("k1")), (a.ref("d1"), a.ref("r1"))):
            with pytest.raises(ValueError, match="HIGHLIGHTS goes from DerivedArtifact to Concept/MemoryUnit"):
                GraphEdge(source=wrong[0], type=HIGHLIGHTS, target=wrong[1])

    async def test_deleting_a_user_leaves_nothing_of_theirs(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, b = two_users
        await graph.apply(a.user_id, a.batch)
        await graph.apply(b.user_id, b.batch)
        before_b = await snapshot(graph, b.user_id)
        assert await graph.delete_user(a.user_id) == len(a.nodes)
        assert await graph.counts(a.user_id) == GraphCounts.of({}, {})
        assert await graph.concept_graph(a.user_id) == []
        assert await graph.neighbourhood(a.user_id, a.ref("c1"), 3) == Subgraph()
        assert all([await graph.node_hashes(a.user_id, label) == {} for label in NodeLabel])
        assert await snapshot(graph, b.user_id) == before_b
        assert await graph.delete_user(a.user_id) == 0

    async def test_users_never_see_or_change_each_others_graph(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, b = two_users
        await graph.apply(a.user_id, a.batch)
        await graph.apply(b.user_id, b.batch)
        before_a, before_b = await snapshot(graph, a.user_id), await snapshot(graph, b.user_id)
        a_keys = {n.key for n in a.nodes}

        for node in a.nodes:
            assert await graph.neighbourhood(b.user_id, node.ref, 3) == Subgraph()
        found = [await graph.neighbourhood(b.user_id, n.ref, 3) for n in b.nodes]
        assert not a_keys & {n.key for sub in found for n in sub.nodes}
        assert not a_keys & {k for label in NodeLabel for k in await graph.node_hashes(b.user_id, label)}
        b_edges = [key for kind in EDGE_TYPES for key in await graph.edge_hashes(b.user_id, kind)]
        assert not a_keys & ({k.source.key for k in b_edges} | {k.target.key for k in b_edges})
        assert not a_keys & {key for w in await graph.concept_graph(b.user_id) for key in (w.a, w.b)}
        assert await graph.counts(b.user_id) == before_a[0]  # the same shape, B's own

        await graph.apply(
            b.user_id, GraphBatch(delete_nodes=tuple(n.ref for n in a.nodes if n.label is not NodeLabel.USER))
        )
        await graph.apply(b.user_id, GraphBatch(delete_edges=tuple(e.key for e in a.edges)))
        with pytest.raises(GraphWriteRefused):
            await graph.apply(b.user_id, GraphBatch(upsert_nodes=(a.node("c1").model_copy(update={"properties": {}}),)))
        stolen = GraphEdge(source=b.ref("m1"), type=MENTIONS, target=a.ref("c1"))
        with pytest.raises(GraphWriteRefused):
            await graph.apply(b.user_id, GraphBatch(upsert_edges=(stolen,)))
        with pytest.raises(GraphWriteRefused):
            await graph.apply(b.user_id, GraphBatch(delete_nodes=(NodeRef(label=NodeLabel.USER, key=a.user_id),)))
        assert await snapshot(graph, a.user_id) == before_a
        assert await snapshot(graph, b.user_id) == before_b

    async def test_held_users_are_every_user_with_a_node_sorted(
        self, graph: GraphStore, two_users: tuple[Memory, Memory]
    ) -> None:
        a, b = two_users
        assert not {a.user_id, b.user_id} & set(await graph.held_users())
        await graph.apply(a.user_id, a.batch)
        await graph.apply(b.user_id, GraphBatch(upsert_edges=(b.edge("m1", MENTIONS, "c1"),)))  # placeholders only
        held = await graph.held_users()
        assert {a.user_id, b.user_id} <= set(held) and held == sorted(held)
        await graph.delete_user(a.user_id)
        held = await graph.held_users()
        assert a.user_id not in held and b.user_id in held

    async def test_reconcile_finds_and_removes_what_a_store_holds_of_a_user_postgres_no_longer_has(
        self, graph: GraphStore, two_users: tuple[Memory, Memory], pool: asyncpg.Pool
    ) -> None:
        """A's row goes while the store keeps A's graph (a dispatcher that wrote after forget-user): A is an orphan,
        removed through the port; B, in Postgres, is none. Only A is removed: a shared server may hold others'."""
        a, b = two_users
        await graph.apply(a.user_id, a.batch)
        await graph.apply(b.user_id, b.batch)
        before_b = await snapshot(graph, b.user_id)
        assert not {a.user_id, b.user_id} & set((await find_orphans(pool, graph)).user_ids)
        await delete_user_row_only(pool, a.user_id)
        found = await find_orphans(pool, graph)
        assert a.user_id in found.user_ids and b.user_id not in found.user_ids and found.held >= 2
        assert await remove_orphans(pool, graph, Orphans(found.held, (a.user_id, b.user_id))) == len(a.nodes)
        assert a.user_id not in await graph.held_users()  # and B, who exists (asked again), keeps everything
        assert a.user_id not in (await find_orphans(pool, graph)).user_ids
        assert await graph.counts(a.user_id) == GraphCounts.of({}, {})
        assert await snapshot(graph, b.user_id) == before_b

    async def test_an_empty_batch_is_a_no_op(self, graph: GraphStore, two_users: tuple[Memory, Memory]) -> None:
        a, _ = two_users
        await graph.apply(a.user_id, GraphBatch())
        assert await graph.counts(a.user_id) == GraphCounts.of({}, {})


@pytest.mark.parametrize("backend", [pytest.param("neo4j", marks=pytest.mark.neo4j)], indirect=True)
async def test_neo4j_holds_points_in_time_as_datetime_ordered_as_instants(
    graph: GraphStore, two_users: tuple[Memory, Memory]
) -> None:
    """What the seed's `memoryunit_creation_ts_idx` serves: Cypher sees DateTime values, so ORDER BY and a range
    predicate compare instants (text would compare characters, and `>= datetime(...)` would match nothing). The
    embedded graph keeps the port's ISO text, so this is Neo4j's alone."""
    from store.graph.neo4j import Neo4jGraphStore

    assert isinstance(graph, Neo4jGraphStore)
    a, _ = two_users
    moments = {  # given in three offsets; chronological order m3 < m1 < m2
        "m1": datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
        "m2": datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        "m3": datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9))),
    }
    nodes = tuple(
        GraphNode(label=MU, key=f"{name}-{a.user_id}", properties={"creation_ts": at}) for name, at in moments.items()
    )
    await graph.apply(a.user_id, GraphBatch(upsert_nodes=nodes))
    records, _, _ = await graph._driver.execute_query(
        "MATCH (n:MemoryUnit) WHERE n.userId = $userId AND n.creation_ts >= datetime($since) "
        "RETURN n.muid AS key, valueType(n.creation_ts) AS type ORDER BY n.creation_ts",
        {"userId": a.user_id, "since": "2025-12-31T00:00:00Z"},
    )
    assert [r["key"].split("-")[0] for r in records] == ["m3", "m1", "m2"]
    assert {r["type"] for r in records} == {"ZONED DATETIME NOT NULL"}


@pytest.mark.parametrize("backend", [pytest.param("neo4j", marks=pytest.mark.neo4j)], indirect=True)
async def test_neo4j_retires_the_highlights_an_earlier_orrery_extracted_when_it_connects(
    graph: GraphStore, two_users: tuple[Memory, Memory]
) -> None:
    """Before migration 0023, ingestion's memory unit -> concept link was HIGHLIGHTS. No SQL migration reaches Neo4j,
    and its neighbourhood reads would refuse the shape, so connecting deletes those relationships (the migration's
    outbox rows write IS_ABOUT) and keeps an artifact's HIGHLIGHTS; a second start finds nothing to do."""
    from store.graph.neo4j import Neo4jGraphStore

    assert isinstance(graph, Neo4jGraphStore)
    a, b = two_users
    await graph.apply(a.user_id, a.batch)
    await graph.apply(b.user_id, b.batch)
    before_a, before_b = await snapshot(graph, a.user_id), await snapshot(graph, b.user_id)
    for memory in (a, b):
        await graph._driver.execute_query(
            "MATCH (m:MemoryUnit {muid: $unit}), (c:Concept {id: $concept}) "
            "MERGE (m)-[:HIGHLIGHTS {userId: $userId, strength: 0.9}]->(c)",
            {"unit": memory.ref("m1").key, "concept": memory.ref("c1").key, "userId": memory.user_id},
        )
    await graph.ensure_schema()
    assert (await snapshot(graph, a.user_id), await snapshot(graph, b.user_id)) == (before_a, before_b)
    await graph.ensure_schema()  # nothing left to retire
    around = await graph.neighbourhood(a.user_id, a.ref("m1"), 1)
    assert {e.key for e in around.edges} == expected_neighbourhood(a, a.ref("m1"), 1)[1]
