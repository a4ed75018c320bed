"""The vector store: the port (base.py), its adapters (pgvector.py, weaviate.py), the embedded texts (texts.py).

`open_vector_store` chooses Weaviate when WEAVIATE_URL is set and pgvector (the embedded default) otherwise. The
adapters are imported only when opened, so importing this package loads neither client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from settings import Settings
from store.vector.base import (
    EmbeddingSpace,
    Fingerprint,
    ItemKey,
    KnowledgeItem,
    SourceEntityType,
    StoredVector,
    VectorHit,
    VectorItem,
    VectorStore,
    VectorStoreMismatch,
    VectorStoreUnavailable,
    item_uuid,
)


@asynccontextmanager
async def open_vector_store(
    settings: Settings, pool: asyncpg.Pool, embedder: EmbeddingSpace
) -> AsyncIterator[VectorStore]:
    """The store the settings describe, in the embedder's space (model version and dimension), closed on exit."""
    store: VectorStore
    if settings.weaviate_url:
        from store.vector.weaviate import WeaviateVectorStore

        key = settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None
        store = await WeaviateVectorStore.connect(settings.weaviate_url, embedder, api_key=key)
    else:
        from store.vector.pgvector import PgVectorStore

        store = await PgVectorStore.open(pool, embedder, ef_search=settings.vector_ef_search)
    try:
        yield store
    finally:
        await store.close()


__all__ = [
    "EmbeddingSpace",
    "Fingerprint",
    "ItemKey",
    "KnowledgeItem",
    "SourceEntityType",
    "StoredVector",
    "VectorHit",
    "VectorItem",
    "VectorStore",
    "VectorStoreMismatch",
    "VectorStoreUnavailable",
    "item_uuid",
    "open_vector_store",
]
