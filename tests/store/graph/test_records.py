"""The port's records: what a node holds, how it hashes, which batches and relationships are refused (no backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from store.graph.base import (
    NODE_COLUMNS,
    TEMPORAL_PROPERTIES,
    EdgeKey,
    GraphBatch,
    GraphEdge,
    GraphNode,
    GraphWriteRefused,
    NodeRef,
    content_hash,
    edge_type,
    node_from_row,
)
from store.prisma_schema import load_expected_tables
from store.sync import TABLE

MU = NodeRef(label=NodeLabel.MEMORY_UNIT, key="mu-1")
CONCEPT = NodeRef(label=NodeLabel.CONCEPT, key="c-1")


def test_a_row_becomes_a_node_of_its_scalar_columns() -> None:
    row = {
        "muid": "mu-1",
        "user_id": "u-1",
        "title": "Run",
        "content": "Ran 5k",
        "importance_score": 7.0,
        "sentiment_score": None,
        "creation_ts": datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        "source_conversation_id": "conv-1",
        "unlisted_column": {"a": 1},
    }
    node = node_from_row(NodeLabel.MEMORY_UNIT, row, "u-1")
    assert node.key == "mu-1"
    assert node.properties == {
        "title": "Run",
        "content": "Ran 5k",
        "importance_score": 7.0,
        "creation_ts": "2026-03-01T10:00:00+00:00",
        "source_conversation_id": "conv-1",
    }


def test_a_users_node_keeps_their_secrets_in_postgres() -> None:
    row = {"user_id": "u-1", "email": "a@example.org", "hashed_password": "x", "name": "Maya", "memory_profile": {}}
    assert node_from_row(NodeLabel.USER, row, "u-1").properties == {"name": "Maya"}


def test_another_users_row_is_refused() -> None:
    with pytest.raises(GraphWriteRefused, match=r"Concept row c-1 is not user u-2's"):
        node_from_row(NodeLabel.CONCEPT, {"concept_id": "c-1", "user_id": "u-1", "name": "Emma"}, "u-2")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"nested": 1}, "has type dict"),
        (float("nan"), "only finite numbers"),
        (datetime(2026, 1, 1), "naive datetime"),
        ([1, 2], "has type list"),
    ],
)
def test_values_a_graph_cannot_hold_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GraphNode(label=NodeLabel.CONCEPT, key="c-1", properties={"x": value})


def test_the_temporal_properties_are_the_datetime_columns_nodes_carry() -> None:
    """Read from store/schema.prisma: a DateTime column added to NODE_COLUMNS must be listed, or Neo4j stores text."""
    tables = load_expected_tables()
    datetime_columns = {
        column.name
        for label, columns in NODE_COLUMNS.items()
        for column in tables[TABLE[label]].columns
        if column.name in columns and column.sql_type.startswith("timestamp")
    }
    assert datetime_columns == TEMPORAL_PROPERTIES


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC), "1969-07-20T20:17:40.123456+00:00"),
        ("2025-12-31T23:30:00-05:00", "2026-01-01T04:30:00+00:00"),
        ("2026-01-01T04:30:00+00:00", "2026-01-01T04:30:00+00:00"),
    ],
)
def test_points_in_time_are_held_as_utc_iso_text(value: object, stored: str) -> None:
    node = GraphNode(label=NodeLabel.MEMORY_UNIT, key="mu-1", properties={"creation_ts": value})
    assert node.properties == {"creation_ts": stored}


@pytest.mark.parametrize(
    ("value", "message"),
    [("yesterday", "not ISO-8601"), ("2026-01-01T04:30:00", "naive datetime"), (1767242000, "not int")],
)
def test_a_point_in_time_that_is_no_instant_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GraphNode(label=NodeLabel.MEMORY_UNIT, key="mu-1", properties={"creation_ts": value})


@pytest.mark.parametrize("name", ["userId", "content_hash", "id"])
def test_reserved_property_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="may not be named"):
        GraphNode(label=NodeLabel.CONCEPT, key="c-1", properties={name: "x"})


def test_the_hash_is_of_the_stored_form_and_ignores_order() -> None:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    a = GraphNode(label=NodeLabel.CONCEPT, key="c-1", properties={"name": "Emma", "created_at": moment, "x": None})
    b = GraphNode(label=NodeLabel.CONCEPT, key="c-1", properties={"created_at": moment.isoformat(), "name": "Emma"})
    assert a.content_hash == b.content_hash == content_hash({"name": "Emma", "created_at": "2026-03-01T12:00:00+00:00"})
    assert a.content_hash != GraphNode(label=NodeLabel.CONCEPT, key="c-1", properties={"name": "emma"}).content_hash


def test_relationship_types_come_only_from_the_vocabulary() -> None:
    assert edge_type("MENTIONS") is StructuralRelationshipType.MENTIONS
    assert edge_type("RELATED_TO") is RelationshipType.RELATED_TO
    with pytest.raises(ValueError, match="unknown relationship type 'LOVES'"):
        edge_type("LOVES")
    with pytest.raises(ValidationError, match="unknown relationship type"):
        GraphEdge(source=MU, type="RELATED_TO]->() DELETE r //", target=CONCEPT)


@pytest.mark.parametrize(
    ("source", "kind", "target", "message"),
    [
        (CONCEPT, StructuralRelationshipType.MENTIONS, MU, "MENTIONS goes from MemoryUnit to Concept"),
        (MU, StructuralRelationshipType.BELONGS_TO_COMMUNITY, CONCEPT, "goes from Concept to Community"),
        (NodeRef(label=NodeLabel.USER, key="u"), RelationshipType.RELATED_TO, CONCEPT, "not from User to Concept"),
        (CONCEPT, RelationshipType.RELATED_TO, CONCEPT, "to itself"),
    ],
)
def test_relationships_join_only_the_labels_their_type_allows(
    source: NodeRef, kind: StructuralRelationshipType | RelationshipType, target: NodeRef, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        GraphEdge(source=source, type=kind, target=target)


def test_strength_stays_in_the_edge_tables_range() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        GraphEdge(source=MU, type=StructuralRelationshipType.MENTIONS, target=CONCEPT, strength=1.5)


def test_a_batch_names_each_entity_once_with_its_final_state() -> None:
    node = GraphNode(label=NodeLabel.CONCEPT, key="c-1")
    edge = GraphEdge(source=MU, type=StructuralRelationshipType.MENTIONS, target=CONCEPT)
    with pytest.raises(ValidationError, match="a node listed twice"):
        GraphBatch(upsert_nodes=(node, node))
    with pytest.raises(ValidationError, match="Concept c-1 both upserted and deleted"):
        GraphBatch(upsert_nodes=(node,), delete_nodes=(CONCEPT,))
    with pytest.raises(ValidationError, match="MENTIONS mu-1->c-1 both upserted and deleted"):
        GraphBatch(upsert_edges=(edge,), delete_edges=(edge.key,))
    with pytest.raises(ValidationError, match="upserted while one of its nodes is deleted"):
        GraphBatch(upsert_edges=(edge,), delete_nodes=(MU,))
    with pytest.raises(ValidationError):
        GraphBatch(delete_edges=(edge,))  # an edge with its properties is not a key
    replayed_key = EdgeKey.model_validate(edge.key.model_dump(mode="json"))
    assert len(GraphBatch(upsert_nodes=(node,), delete_edges=(replayed_key,))) == 2


def test_a_batch_may_not_touch_another_users_user_node() -> None:
    batch = GraphBatch(upsert_nodes=(GraphNode(label=NodeLabel.USER, key="u-1"),))
    batch.check_user("u-1")
    with pytest.raises(GraphWriteRefused, match="graph batch of user u-2 names the User node of u-1"):
        batch.check_user("u-2")
