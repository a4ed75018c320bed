"""Every Cypher statement the Neo4j adapter can send, checked by Neo4j's own Cypher front-end, without a server.

`@neo4j-cypher/language-support` (npm, installed into tests/interop by scripts/bootstrap.sh) runs the parser and the
semantic analysis of Neo4j's Cypher compiler (compiled to JavaScript), plus checks against a database schema: the
labels, relationship types, property keys and parameters a statement may name, and which labels each relationship
type joins in which direction. Every statement `store/graph/cypher.py` can build (the seed's DDL; every read and
write, for every label and for every relationship type between every pair of labels it may join) is linted with
exactly the parameters it declares, as Cypher 5 (what Neo4j 5 speaks), and the DDL and one statement of each form
(each builder, whatever label or type it names) also as Cypher 25 (the language Neo4j 2025 adds); each must come back
with no error and no warning: a syntax or type error, a removed or deprecated form, an unknown
label, type, property or parameter, or a relationship pattern the graph cannot hold fails the test. What it cannot
judge (data against constraints, plans, a server's version) is listed in docs/store.md, "Neo4j".
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from core.vocabulary import NodeLabel, StructuralRelationshipType
from store.graph import cypher
from store.graph.base import (
    EDGE_TYPES,
    ENDPOINTS,
    HASH_PROPERTY,
    KEY_PROPERTY,
    NODE_COLUMNS,
    SOURCE_LABELS,
    USER_PROPERTY,
    GraphEdge,
    NodeRef,
)
from store.graph.cypher import Statement
from tests.interop.node import require_node, run_node

LINT_PACKAGE = "@neo4j-cypher/language-support"
CYPHER_5, CYPHER_25 = "CYPHER 5", "CYPHER 25"
MU, CONCEPT = NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT
MENTIONS = StructuralRelationshipType.MENTIONS

PER_LABEL: tuple[Callable[[NodeLabel], Statement], ...] = (
    cypher.upsert_nodes,
    cypher.delete_nodes,
    cypher.delete_user_chunk,
    cypher.start_node,
    cypher.count_nodes,
    cypher.node_hashes,
    cypher.held_users,
)
PER_SOURCE_LABEL = (cypher.count_edges_from, cypher.edges_from)
PER_SHAPE: tuple[Callable[[NodeLabel, Any, NodeLabel], Statement], ...] = (
    cypher.upsert_edges,
    cypher.delete_edges,
    cypher.edges_between,
)
FIXED = ("EXPAND", "CONCEPT_DIRECT", "CONCEPT_SHARED")

SAMPLE_VALUES: dict[str, Any] = {
    "userId": "user-1",
    "rows": [{"key": "k-1", "source": "k-1", "target": "k-2", "properties": {"userId": "user-1"}}],
    "keys": ["k-1"],
    "key": "k-1",
    "chunk": 1000,
    "frontier": ["4:db:1"],
    "types": [kind.value for kind in EDGE_TYPES],
    "labels": [label.value for label in NodeLabel],
}
"""A value of each parameter's kind (the front-end needs parameters declared; their values are not typed)."""


def adapter_statements() -> dict[str, Statement]:
    """Every statement the adapter can send, by a name that says how it was built."""
    found = {f"SCHEMA[{n}]": statement for n, statement in enumerate(cypher.SCHEMA)}
    found |= {f"ADDED_SCHEMA[{n}]": statement for n, statement in enumerate(cypher.ADDED_SCHEMA)}
    found |= {f"RETIRED[{n}]": statement for n, statement in enumerate(cypher.RETIRED)}
    found |= {name: getattr(cypher, name) for name in FIXED}
    for label in NodeLabel:
        found |= {f"{build.__name__}({label})": build(label) for build in PER_LABEL}
    for label in SOURCE_LABELS:
        found |= {f"{build.__name__}({label})": build(label) for build in PER_SOURCE_LABEL}
    for kind in EDGE_TYPES:
        sources, targets = ENDPOINTS[kind]
        for source in sorted(sources):
            for target in sorted(targets):
                shape = (source, kind, target)
                found |= {f"{build.__name__}({source}, {kind}, {target})": build(*shape) for build in PER_SHAPE}
    return found


def graph_schema() -> dict[str, Any]:
    """What Orrery's graph holds, as the front-end's DbSchema: its labels, types, property keys and endpoints (and
    the retired shapes a store an earlier Orrery wrote may still hold, which cypher.RETIRED removes)."""
    ends = {"source": NodeRef(label=MU, key="a"), "target": NodeRef(label=CONCEPT, key="b")}
    edge = GraphEdge(**ends, type=MENTIONS, description="d", source_conversation_id="c")  # every property set
    columns = {column for label_columns in NODE_COLUMNS.values() for column in label_columns}
    keys = {USER_PROPERTY, HASH_PROPERTY, *KEY_PROPERTY.values(), *columns, *edge.properties}
    return {
        "labels": [label.value for label in NodeLabel],
        "relationshipTypes": [kind.value for kind in EDGE_TYPES],
        "propertyKeys": sorted(keys),
        "graphSchema": [
            {"from": source.value, "to": target.value, "relType": kind.value}
            for kind, (sources, targets) in ENDPOINTS.items()
            for source in sorted(sources)
            for target in sorted(targets)
        ]
        + [
            {"from": source.value, "to": target.value, "relType": kind}
            for source, kind, target in cypher.RETIRED_SHAPES
        ],
    }


BAD: dict[str, tuple[Statement, str]] = {
    "a parameter it does not declare": (
        Statement("MATCH (n:Concept) WHERE n.userId = $user RETURN n.id AS key", frozenset({"userId"})),
        "Parameter $user is not defined",
    ),
    "a deprecated function": (
        Statement("MATCH (n:Concept) WHERE n.userId = $userId RETURN id(n) AS id", frozenset({"userId"})),
        "deprecated",
    ),
    "removed syntax": (
        Statement("MATCH (n:Concept) WHERE exists(n.userId) RETURN n.id AS key"),
        "no longer supported",
    ),
    "the pre-5 constraint syntax": (
        Statement("CREATE CONSTRAINT ON (n:User) ASSERT n.userId IS UNIQUE"),
        "ON and ASSERT should not be used",
    ),
    "a type error": (
        Statement("MATCH (n:Concept) WHERE n.userId = $userId RETURN n.salience - true AS x", frozenset({"userId"})),
        "Type mismatch",
    ),
    "a misspelt label": (
        Statement("MATCH (n:Concpt) WHERE n.userId = $userId RETURN n.id AS key", frozenset({"userId"})),
        "Concpt is not present",
    ),
    "a misspelt property": (
        Statement("MATCH (n:Concept) WHERE n.userid = $userId RETURN n.id AS key", frozenset({"userId"})),
        "userid is not present",
    ),
    "the adapter's own read, built the wrong way round": (
        cypher.edges_between(CONCEPT, MENTIONS, MU),
        "(:MemoryUnit) has no incoming [:MENTIONS]",
    ),
}
"""Statements a server would reject or warn about, each with what the front-end must say of it."""


@pytest.fixture(scope="module")
def lint() -> dict[str, list[dict[str, Any]]]:
    """name -> one result per version ({"version", "diagnostics"}), the adapter's statements and BAD's, from one
    node process (loading the front-end takes seconds)."""
    require_node(LINT_PACKAGE)
    named = {**adapter_statements(), **{name: statement for name, (statement, _) in BAD.items()}}
    forms: dict[str, str] = {}  # the first statement of each builder: its form, whatever words it was given
    for name in named:
        forms.setdefault(name.split("(")[0], name)
    request = {
        "schema": graph_schema(),
        "statements": [
            {
                "text": s.text,
                "parameters": {name: SAMPLE_VALUES[name] for name in s.parameters},
                "versions": [CYPHER_5, CYPHER_25] if name in forms.values() else [CYPHER_5],
            }
            for name, s in named.items()
        ],
    }
    results = json.loads(run_node("cypher_lint.mjs", stdin=json.dumps(request), timeout=600))
    return dict(zip(named, results, strict=True))


def test_every_statement_the_adapter_can_send_passes_neo4js_front_end(lint: dict[str, list[dict[str, Any]]]) -> None:
    statements = adapter_statements()
    # 13 + 2 DDL, 1 retiring, 3 fixed, 7 per label, 2 per source label, 3 per relationship type and pair of labels
    # it joins (the ingestion vocabulary on 4 pairs; MENTIONS, BELONGS_TO_COMMUNITY on 1, DERIVED_FROM on 3, REVISES
    # and HIGHLIGHTS on 2, AUTHORED_BY, MERGED_INTO on 1)
    assert len(statements) == 13 + 2 + 1 + 3 + 7 * 6 + 2 * 4 + 3 * (17 * 4 + 1 + 1 + 3 + 2 + 2 + 1 + 1)
    reported = {
        f"{name} [{result['version']}]: {statements[name].text}": result["diagnostics"]
        for name in statements
        for result in lint[name]
        if result["diagnostics"]
    }
    assert reported == {}
    assert all(lint[name][0]["version"] == CYPHER_5 for name in statements)
    as_cypher_25 = {name.split("(")[0] for name in statements if len(lint[name]) == 2}
    builders = (*PER_LABEL, *PER_SOURCE_LABEL, *PER_SHAPE)
    ddl = {f"SCHEMA[{n}]" for n in range(13)} | {f"ADDED_SCHEMA[{n}]" for n in range(2)} | {"RETIRED[0]"}
    assert as_cypher_25 == ddl | set(FIXED) | {b.__name__ for b in builders}


@pytest.mark.parametrize("case", list(BAD))
def test_the_front_end_reports_what_a_server_would_refuse_or_warn_about(
    lint: dict[str, list[dict[str, Any]]], case: str
) -> None:
    """The check is not vacuous: each deliberately bad statement draws the diagnostic it deserves."""
    cypher_5 = lint[case][0]
    messages = [d["message"] for d in cypher_5["diagnostics"]]
    assert any(BAD[case][1] in message for message in messages), messages


def test_each_statement_declares_exactly_the_parameters_its_text_uses() -> None:
    """The front-end reports a used parameter that is not declared; this is the other way round."""
    for name, statement in adapter_statements().items():
        used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", statement.text))
        assert used == statement.parameters, name
        assert used <= set(SAMPLE_VALUES), name


def test_the_statements_linted_are_every_statement_cypher_py_builds() -> None:
    """A builder or statement added to store/graph/cypher.py must be added here too, or this fails."""
    builders = {
        name
        for name, value in vars(cypher).items()
        if inspect.isfunction(value)
        and value.__module__ == cypher.__name__
        and not name.startswith("_")
        and inspect.signature(value).return_annotation == "Statement"
    }
    constants = {name for name, value in vars(cypher).items() if isinstance(value, Statement)}
    assert builders == {build.__name__ for build in (*PER_LABEL, *PER_SOURCE_LABEL, *PER_SHAPE)}
    assert constants == set(FIXED)
    assert all(
        isinstance(statement, Statement) for statement in (*cypher.SCHEMA, *cypher.ADDED_SCHEMA, *cypher.RETIRED)
    )
