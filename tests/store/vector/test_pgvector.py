"""What only the pgvector adapter has: the HNSW path and its exact fallback, one index per dimension, the foreign key
to users, and replays that leave rows untouched."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import asyncpg
import pytest

from agents.embeddings import LocalEmbedder
from core.errors import PermanentError
from store.postgres import create_pool
from store.vector.base import KnowledgeItem, SourceEntityType, VectorItem
from store.vector.pgvector import PgVectorStore, vector_literal
from tests.store.vector.conftest import new_user
from tests.store.vector.test_contract import CORPUS, embedded, knowledge, query

MU = SourceEntityType.MEMORY_UNIT


@dataclass(frozen=True)
class Space:
    model_version: str
    dimension: int


@pytest.fixture
async def hnsw_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose planner may not sort, so every search takes the HNSW index, as it does for a user with many
    items (or with a generic plan) in production."""
    separator = "&" if "?" in database_url else "?"
    pool = await create_pool(f"{database_url}{separator}{urlencode({'enable_sort': 'off'})}", min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def test_when_the_index_walk_comes_up_short_the_search_is_exact(
    pool: asyncpg.Pool, hnsw_pool: asyncpg.Pool, embedder: LocalEmbedder, make_user: list[str]
) -> None:
    """Bob's 600 items surround the query, so an HNSW walk of 10 candidates finds few or none of Alice's; the store
    notices it returned fewer than asked and reads Alice's rows exactly."""
    alice, bob = await new_user(pool, make_user), await new_user(pool, make_user)
    store = await PgVectorStore.open(hnsw_pool, embedder, ef_search=10)
    alice_items = [knowledge(alice, *row) for row in CORPUS]
    await store.upsert(await embedded(embedder, alice_items))
    probe = await query(embedder, "my sister's bakery")
    rng = random.Random(3)
    crowd = []
    for n in range(600):
        near = [x + rng.gauss(0, 0.01) for x in probe]
        crowd.append(VectorItem(knowledge(bob, MU, f"crowd {n}", "filler", 10), near, embedder.model_version))
    await store.upsert(crowd)
    await pool.execute("ANALYZE runtime.vector_items")

    args = (alice, vector_literal(probe), embedder.model_version, None, None, None, 10)
    async with hnsw_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL hnsw.ef_search = 10")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {store._indexed_search}", *args))
        walked = await conn.fetch(store._indexed_search, *args)
    assert "vector_items_embedding_384_idx" in plan
    assert len(walked) < len(alice_items)  # what the index walk alone gives

    hits = await store.search(alice, probe, limit=10)
    assert {h.key for h in hits} == {i.key for i in alice_items}
    assert hits[0].title in {"Emma's bakery opened", "Emma"}


async def test_each_dimension_has_its_own_index_and_models_never_mix(
    pool: asyncpg.Pool, embedder: LocalEmbedder, make_user: list[str]
) -> None:
    """A model change needs no migration: the new dimension's partial index is created on open, and each store
    searches only the vectors of its own model."""
    alice = await new_user(pool, make_user)
    local = await PgVectorStore.open(pool, embedder)
    small = await PgVectorStore.open(pool, Space("tiny-8", 8))
    assert await pool.fetchval("SELECT to_regclass('runtime.vector_items_embedding_8_idx') IS NOT NULL")
    await PgVectorStore.open(pool, Space("tiny-8", 8))  # a second start finds it

    items = [knowledge(alice, *row) for row in CORPUS[:2]]
    await local.upsert(await embedded(embedder, items))
    other = knowledge(alice, MU, "only in the small space", "x", 1)
    await small.upsert([VectorItem(other, [1.0] + [0.0] * 7, "tiny-8")])

    assert {h.key for h in await small.search(alice, [1.0] + [0.0] * 7)} == {other.key}
    assert {h.key for h in await local.search(alice, await query(embedder, "run"))} == {i.key for i in items}
    assert (await local.counts(alice))[MU] == 3  # counts and fingerprints show every model: reembed finds them
    assert (await local.fingerprints(alice))[other.key].embedding_model_version == "tiny-8"


async def test_vectors_for_a_user_postgres_no_longer_has_are_refused(
    pool: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    store = await PgVectorStore.open(pool, embedder)
    ghost = str(uuid.uuid4())
    item = KnowledgeItem(
        user_id=ghost,
        source_entity_type=MU,
        source_entity_id=str(uuid.uuid4()),
        title="t",
        text_content="c",
        embedding_text="t c",
        created_at=knowledge("x", *CORPUS[0]).created_at,
    )
    with pytest.raises(PermanentError, match=f"vector items for user {ghost}: no such user in Postgres"):
        await store.upsert(await embedded(embedder, [item]))


async def test_a_replay_leaves_the_rows_untouched_and_deleting_the_user_row_cascades(
    pool: asyncpg.Pool, embedder: LocalEmbedder, make_user: list[str]
) -> None:
    alice = await new_user(pool, make_user)
    store = await PgVectorStore.open(pool, embedder)
    vectors = await embedded(embedder, [knowledge(alice, *row) for row in CORPUS])
    await store.upsert(vectors)
    stamps = "SELECT source_entity_id, updated_at, xmin::text FROM runtime.vector_items WHERE user_id = $1"
    before = sorted(map(tuple, await pool.fetch(stamps, alice)))
    await store.upsert(vectors)
    assert sorted(map(tuple, await pool.fetch(stamps, alice))) == before
    await pool.execute("DELETE FROM users WHERE user_id = $1", alice)
    assert await pool.fetchval("SELECT count(*) FROM runtime.vector_items WHERE user_id = $1", alice) == 0
