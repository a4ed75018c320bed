"""The graph store: one port (base.GraphStore), two adapters (Neo4j, the embedded Postgres graph), one factory.

The adapters are imported inside `open_graph_store`, so importing this package never loads the Neo4j driver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from settings import Settings
from store.graph.base import GraphStore


@asynccontextmanager
async def open_graph_store(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[GraphStore]:
    """Neo4j when NEO4J_URI is set (schema applied on connect), else the graph in Postgres on `pool`; closed on
    exit. An unreachable Neo4j raises GraphStoreUnavailable naming it."""
    store: GraphStore
    if settings.neo4j_uri:
        from store.graph.neo4j import Neo4jGraphStore

        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else None
        store = await Neo4jGraphStore.connect(settings.neo4j_uri, settings.neo4j_user, password)
    else:
        from store.graph.postgres import PostgresGraphStore

        store = PostgresGraphStore(pool)
    try:
        yield store
    finally:
        await store.close()
