"""Fixtures for the vector store contract suite: the real local embedding model and one store per backend.

pgvector runs always (the test database has migration 0007); Weaviate runs when WEAVIATE_URL points at a server,
otherwise its cases are skipped with the reason in the summary (`-ra`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agents.embeddings import LocalEmbedder
from store.repos.users import create_user
from store.vector.base import VectorStore
from store.vector.pgvector import PgVectorStore

BACKENDS = ["pgvector", "weaviate"]


@pytest.fixture(scope="session")
async def embedder() -> LocalEmbedder:
    """all-MiniLM-L6-v2 from the installed package, loaded once per session (about 4 s)."""
    return await LocalEmbedder.load()


@pytest.fixture
async def make_user(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """Users created in Postgres (pgvector's foreign key wants them); the list is every id made, for cleanup."""
    made: list[str] = []
    yield made


async def new_user(pool: asyncpg.Pool, made: list[str]) -> str:
    user_id = str(uuid.uuid4())
    await create_user(pool, user_id, email=f"{user_id}@example.test")
    made.append(user_id)
    return user_id


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, pool: asyncpg.Pool, embedder: LocalEmbedder, make_user: list[str]
) -> AsyncIterator[VectorStore]:
    if request.param == "pgvector":
        opened: VectorStore = await PgVectorStore.open(pool, embedder)
    else:
        url = os.environ.get("WEAVIATE_URL")
        if not url:
            pytest.skip("Weaviate backend: WEAVIATE_URL is not set (no Weaviate server on this machine)")
        from store.vector.weaviate import WeaviateVectorStore

        opened = await WeaviateVectorStore.connect(url, embedder, api_key=os.environ.get("WEAVIATE_API_KEY"))
    try:
        yield opened
    finally:
        for user_id in make_user:  # Weaviate keeps its tenants across tests; the database is per test anyway
            await opened.delete_user(user_id)
        await opened.close()
