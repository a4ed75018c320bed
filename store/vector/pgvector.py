"""The embedded vector store: runtime.vector_items in Postgres with pgvector (migration 0007).

Search: Postgres plans each query. For a user with many items it walks the HNSW index of the current dimension
(`hnsw.ef_search` candidates, ORRERY_VECTOR_EF_SEARCH) and keeps the user's; for a user with few items it reads
them by the (user_id, model) index and sorts exactly. pgvector before 0.8 stops an HNSW scan after ef_search
candidates, so a filter can leave fewer than `limit` rows although more exist: the query is then repeated as an
exact scan of the user's rows, which is cheap exactly when that happens (few matching rows).

Vectors travel as pgvector's text form (`$n::text::vector`), so the adapter works whether or not the connection has
pgvector's binary codec (a pool opened before the migration created the type has not).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from core.errors import PermanentError
from store.vector.base import (
    EmbeddingSpace,
    Fingerprint,
    ItemKey,
    SourceEntityType,
    StoredVector,
    VectorHit,
    VectorItem,
    VectorStore,
)

log = structlog.get_logger(__name__)

HNSW_MAX_DIMENSIONS = 2000
"""pgvector indexes `vector` up to 2000 dimensions; above that the store searches exactly (and says so)."""

_COLUMNS = (
    "user_id, source_entity_type, source_entity_id, title, text_content, embedding_model_version, created_at, "
    "importance_score, tags"
)

_UPSERT = f"""
INSERT INTO runtime.vector_items ({_COLUMNS}, content_hash, embedding_hash, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::vector)
ON CONFLICT (user_id, source_entity_type, source_entity_id) DO UPDATE SET
    title = EXCLUDED.title, text_content = EXCLUDED.text_content,
    embedding_model_version = EXCLUDED.embedding_model_version, created_at = EXCLUDED.created_at,
    importance_score = EXCLUDED.importance_score, tags = EXCLUDED.tags, content_hash = EXCLUDED.content_hash,
    embedding_hash = EXCLUDED.embedding_hash, embedding = EXCLUDED.embedding, updated_at = now()
WHERE vector_items.content_hash <> EXCLUDED.content_hash
   OR vector_items.embedding_model_version <> EXCLUDED.embedding_model_version
"""

_FILTERS = """
WHERE user_id = $1 AND embedding_model_version = $3 AND vector_dims(embedding) = {dimension}
  AND ($4::text[] IS NULL OR source_entity_type = ANY($4::text[]))
  AND ($5::timestamptz IS NULL OR created_at >= $5) AND ($6::timestamptz IS NULL OR created_at < $6)
"""


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form. Nine significant digits keep every float32 exactly (pgvector stores float32), and one
    %-format of the whole vector is 3-5x cheaper than repr per number: the dispatcher writes hundreds a second."""
    return ("[" + "%.9g," * len(vector))[:-1] % tuple(vector) + "]" if vector else "[]"


class PgVectorStore(VectorStore):
    """VectorStore on the runtime schema's table; every statement filters on user_id."""

    backend = "pgvector"

    def __init__(self, pool: asyncpg.Pool, space: EmbeddingSpace, *, ef_search: int = 200) -> None:
        super().__init__(space)
        self._pool = pool
        self._ef_search = ef_search
        dimension = int(self.dimension)
        # the query vector in a scalar subquery: parsed once per statement, not once per row (a generic plan would)
        distance = f"(embedding::vector({dimension}) <=> (SELECT $2::text::vector({dimension})))"
        filters = _FILTERS.format(dimension=dimension)
        select = f"SELECT {_COLUMNS}, 1 - {{distance}} AS score FROM runtime.vector_items {filters}"
        self._indexed_search = select.format(distance=distance) + f" ORDER BY {distance} LIMIT $7"
        exact = "(embedding <=> (SELECT $2::text::vector))"  # not the indexed expression: reads the user's rows
        self._exact_search = select.format(distance=exact) + f" ORDER BY {exact} LIMIT $7"

    @classmethod
    async def open(cls, pool: asyncpg.Pool, space: EmbeddingSpace, *, ef_search: int = 200) -> PgVectorStore:
        """The store, with the HNSW index for the embedder's dimension created if this is a new dimension."""
        store = cls(pool, space, ef_search=ef_search)
        await store._ensure_index()
        return store

    async def _ensure_index(self) -> None:
        dimension = int(self.dimension)
        if dimension > HNSW_MAX_DIMENSIONS:
            log.warning("pgvector.exact_search_only", dimension=dimension, limit=HNSW_MAX_DIMENSIONS)
            return
        name = f"vector_items_embedding_{dimension}_idx"
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"runtime.{name}"):
                return
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)  # two workers starting at once
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON runtime.vector_items USING hnsw "
                f"((embedding::vector({dimension})) vector_cosine_ops) WHERE vector_dims(embedding) = {dimension}"
            )
        log.info("pgvector.index_created", index=name)

    async def upsert(self, items: Sequence[VectorItem]) -> None:
        self._check(items)
        if not items:
            return
        rows = [
            (
                entry.item.user_id,
                entry.item.source_entity_type.value,
                entry.item.source_entity_id,
                entry.item.title,
                entry.item.text_content,
                entry.embedding_model_version,
                entry.item.created_at,
                entry.item.importance_score,
                list(entry.item.tags),
                entry.item.content_hash,
                entry.item.embedding_hash,
                vector_literal(entry.vector),
            )
            for entry in items
        ]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(_UPSERT, rows)
        except asyncpg.ForeignKeyViolationError:
            users = sorted({entry.item.user_id for entry in items})
            raise PermanentError(
                f"vector items for user {', '.join(users)}: no such user in Postgres (deleted?); nothing to store"
            ) from None

    async def search(
        self,
        user_id: str,
        vector: Sequence[float],
        *,
        limit: int = 10,
        entity_types: Sequence[SourceEntityType] | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[VectorHit]:
        self._check_query(vector, limit)
        types = [t.value for t in entity_types] if entity_types is not None else None
        args = (user_id, vector_literal(vector), self.model_version, types, created_from, created_before, limit)
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(max(self._ef_search, limit)))
                rows = await conn.fetch(self._indexed_search, *args)
            if len(rows) < limit:
                rows = await conn.fetch(self._exact_search, *args)
        return [_hit(row) for row in rows]

    async def stored_vectors(self, user_id: str, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredVector]:
        if not keys:
            return {}
        rows = await self._pool.fetch(
            "SELECT source_entity_type, source_entity_id, content_hash, embedding_hash, embedding::real[] AS embedding "
            "FROM runtime.vector_items WHERE user_id = $1 AND embedding_model_version = $2 "
            "AND vector_dims(embedding) = $3 AND source_entity_id = ANY($4::text[])",
            user_id,
            self.model_version,
            int(self.dimension),
            sorted({key.source_entity_id for key in keys}),
        )
        wanted = set(keys)
        found: dict[ItemKey, StoredVector] = {}
        for row in rows:
            key = ItemKey(SourceEntityType(row["source_entity_type"]), row["source_entity_id"])
            if key in wanted:
                vector = list(row["embedding"])  # float4[] arrives binary: no text to parse
                found[key] = StoredVector(row["content_hash"], row["embedding_hash"], vector)
        return found

    async def delete_entity(self, user_id: str, source_entity_type: SourceEntityType, source_entity_id: str) -> bool:
        deleted = await self._pool.fetchval(
            "DELETE FROM runtime.vector_items WHERE user_id = $1 AND source_entity_type = $2 "
            "AND source_entity_id = $3 RETURNING 1",
            user_id,
            source_entity_type.value,
            source_entity_id,
        )
        return deleted is not None

    async def delete_user(self, user_id: str) -> int:
        status: str = await self._pool.execute("DELETE FROM runtime.vector_items WHERE user_id = $1", user_id)
        return int(status.split()[-1])

    async def counts(self, user_id: str) -> dict[SourceEntityType, int]:
        rows = await self._pool.fetch(
            "SELECT source_entity_type, count(*) AS n FROM runtime.vector_items WHERE user_id = $1 "
            "GROUP BY source_entity_type",
            user_id,
        )
        found = {SourceEntityType(row["source_entity_type"]): int(row["n"]) for row in rows}
        return {kind: found.get(kind, 0) for kind in SourceEntityType}

    async def fingerprints(
        self, user_id: str, source_entity_type: SourceEntityType | None = None
    ) -> dict[ItemKey, Fingerprint]:
        rows = await self._pool.fetch(
            "SELECT source_entity_type, source_entity_id, content_hash, embedding_model_version "
            "FROM runtime.vector_items WHERE user_id = $1 AND ($2::text IS NULL OR source_entity_type = $2)",
            user_id,
            source_entity_type.value if source_entity_type else None,
        )
        return {
            ItemKey(SourceEntityType(row["source_entity_type"]), row["source_entity_id"]): Fingerprint(
                row["content_hash"], row["embedding_model_version"]
            )
            for row in rows
        }

    async def held_users(self) -> list[str]:
        rows = await self._pool.fetch("SELECT DISTINCT user_id FROM runtime.vector_items ORDER BY user_id")
        return [row["user_id"] for row in rows]

    async def close(self) -> None:
        """The pool belongs to the caller."""


def _hit(row: asyncpg.Record) -> VectorHit:
    data: dict[str, Any] = dict(row)
    return VectorHit(
        user_id=data["user_id"],
        source_entity_type=SourceEntityType(data["source_entity_type"]),
        source_entity_id=data["source_entity_id"],
        title=data["title"],
        text_content=data["text_content"],
        created_at=data["created_at"],
        importance_score=data["importance_score"],
        tags=tuple(data["tags"]),
        embedding_model_version=data["embedding_model_version"],
        score=float(data["score"]),
    )
