"""The Neo4j side that runs without a server: the schema is the seed's, and only vocabulary words reach Cypher text.

seed_000_neo4j_schema.cypher is the Cypher block of seed 000 (V9.7, Part 2) copied byte for byte; when the seed
document itself is beside the checkout (shared/seeds/, as on the developers' machines and CI), the copy is checked
against it too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import asyncpg
import pytest

from core.vocabulary import NodeLabel, RelationshipType, StructuralRelationshipType
from settings import Settings
from store.graph import cypher, open_graph_store
from store.graph.base import GraphStoreUnavailable
from store.graph.postgres import PostgresGraphStore

HERE = Path(__file__).resolve().parent
SEED_COPY = HERE / "seed_000_neo4j_schema.cypher"
SEED_DOCUMENT = HERE.parents[2].parent / "shared" / "seeds" / "000_fb0edbb23c9fde38.txt"


def seed_statements(text: str) -> list[str]:
    """The statements of a Cypher script: `//` comments dropped, split on `;`, whitespace collapsed."""
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    return [" ".join(part.split()) for part in code.split(";") if part.strip()]


def test_the_adapter_applies_exactly_the_seeds_schema() -> None:
    seed = seed_statements(SEED_COPY.read_text(encoding="utf-8"))
    assert len(seed) == 13
    assert [statement.text for statement in cypher.SCHEMA] == seed


def test_the_schema_names_the_seeds_keys() -> None:
    """Read back from the statements: each label's unique key is the one the adapter MERGEs on."""
    unique = {
        match.group(1): match.group(2)
        for match in (re.search(r"FOR \(n:(\w+)\) REQUIRE n\.(\w+) IS UNIQUE", s.text) for s in cypher.SCHEMA)
        if match
    }
    assert unique == {
        "User": "userId",
        "MemoryUnit": "muid",
        "Concept": "id",
        "DerivedArtifact": "id",
        "Community": "community_id",
    }
    for label, key in unique.items():
        assert f"{{{key}: row.key" in cypher.upsert_nodes(NodeLabel(label)).text or label == "User"


@pytest.mark.skipif(not SEED_DOCUMENT.exists(), reason=f"seed document not found at {SEED_DOCUMENT}")
def test_the_copy_is_the_seeds_block() -> None:
    document = SEED_DOCUMENT.read_text(encoding="utf-8")
    start = document.index("```cypher\n", document.index("Part 2: Neo4j V9.7")) + len("```cypher\n")
    assert document[start : document.index("```", start)] == SEED_COPY.read_text(encoding="utf-8")


def test_a_statement_is_sent_with_exactly_its_parameters() -> None:
    statement = cypher.count_nodes(NodeLabel.CONCEPT)
    assert statement.bind(userId="u") == (statement.text, {"userId": "u"})
    for wrong in ({}, {"userId": "u", "types": []}, {"user_id": "u"}):
        with pytest.raises(ValueError, match=r"takes \['userId'\]"):
            statement.bind(**wrong)


def test_every_statement_filters_on_the_user() -> None:
    statements = [cypher.EXPAND, cypher.CONCEPT_DIRECT, cypher.CONCEPT_SHARED]
    for label in NodeLabel:
        statements += [
            cypher.upsert_nodes(label),
            cypher.delete_nodes(label),
            cypher.delete_user_chunk(label),
            cypher.start_node(label),
            cypher.count_nodes(label),
            cypher.count_edges_from(label),
            cypher.node_hashes(label),
        ]
    statements += [
        build(NodeLabel.MEMORY_UNIT, kind, NodeLabel.CONCEPT)
        for kind in RelationshipType
        for build in (cypher.upsert_edges, cypher.delete_edges, cypher.edges_between)
    ]
    for statement in statements:
        assert "userId = $userId" in statement.text or "userId: $userId" in statement.text, statement


@pytest.mark.parametrize(
    "word", ["Concept) DETACH DELETE n //", "MemoryUnit`", "RELATED_TO]->() DELETE r //", "related_to", ""]
)
def test_nothing_but_vocabulary_reaches_cypher_text(word: str) -> None:
    with pytest.raises(ValueError):
        cypher.upsert_nodes(word)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cypher.upsert_edges(NodeLabel.MEMORY_UNIT, word, NodeLabel.CONCEPT)  # type: ignore[arg-type]
    assert (
        "MERGE (a)-[r:MENTIONS]->(b)"
        in cypher.upsert_edges(NodeLabel.MEMORY_UNIT, StructuralRelationshipType.MENTIONS, NodeLabel.CONCEPT).text
    )


async def test_factory_picks_postgres_without_neo4j(pool: asyncpg.Pool) -> None:
    async with open_graph_store(Settings(neo4j_uri=None), pool) as store:
        assert isinstance(store, PostgresGraphStore)
        assert store.backend == "postgres"


async def test_an_unreachable_neo4j_is_one_clear_error(pool: asyncpg.Pool) -> None:
    """A real driver against a closed local port: the error names the server and is retryable."""
    settings = Settings(neo4j_uri="bolt://127.0.0.1:9", neo4j_password="x")
    with pytest.raises(GraphStoreUnavailable, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:9"):
        async with open_graph_store(settings, pool):
            pytest.fail("opened a store on a closed port")


@pytest.mark.neo4j
@pytest.mark.skipif(not os.environ.get("NEO4J_URI"), reason="NEO4J_URI is not set: no Neo4j server to check against")
async def test_the_server_has_the_seeds_constraints_and_indexes() -> None:
    from store.graph.neo4j import Neo4jGraphStore

    store = await Neo4jGraphStore.connect(
        os.environ["NEO4J_URI"], os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD")
    )
    try:
        await store.ensure_schema()  # a second time: IF NOT EXISTS
        records, _, _ = await store._driver.execute_query("SHOW CONSTRAINTS YIELD name, labelsOrTypes, properties")
        constraints = {r["name"]: (r["labelsOrTypes"], r["properties"]) for r in records}
        records, _, _ = await store._driver.execute_query("SHOW INDEXES YIELD name, labelsOrTypes, properties")
        indexes = {r["name"]: (r["labelsOrTypes"], r["properties"]) for r in records}
    finally:
        await store.close()
    for statement in (*cypher.SCHEMA, *cypher.ADDED_SCHEMA):
        match = re.search(
            r"(CONSTRAINT|INDEX) (\w+) IF NOT EXISTS FOR \(n:(\w+)\) (?:REQUIRE|ON) \(?n\.(\w+)", statement.text
        )
        assert match is not None
        kind, name, label, key = match.groups()
        assert (constraints if kind == "CONSTRAINT" else indexes)[name] == ([label], [key])
