"""The VectorStore port: items of the seed's `UserKnowledgeItem` shape, searched per user.

A vector store is derived from Postgres (the outbox writes it, `run.py rebuild --vector` rebuilds it), so every
write is an idempotent upsert keyed on (user, source entity type, source entity id), every read takes a user id, and
`fingerprints` give reconciliation an id → content hash map to compare with what Postgres says the items should be.
The adapters (pgvector, Weaviate) are checked by one contract suite (tests/store/vector/).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, NamedTuple, Protocol

from core.errors import PermanentError, TransientError


class SourceEntityType(StrEnum):
    """What a vector item was made from (the seed's sourceEntityType)."""

    MEMORY_UNIT = "MemoryUnit"
    CONCEPT = "Concept"
    DERIVED_ARTIFACT = "DerivedArtifact"


class EmbeddingSpace(Protocol):
    """What a store needs to know of the embedder (agents/embeddings.py: Embedder): the space its vectors live in."""

    @property
    def model_version(self) -> str: ...

    @property
    def dimension(self) -> int: ...


ITEM_NAMESPACE = uuid.UUID("5b0c1c9e-7f0e-4a39-9d0e-0f7a3c1e2b11")
"""uuid5 namespace of item ids. Never change it: every stored item id is derived from it."""


def item_uuid(user_id: str, source_entity_type: SourceEntityType, source_entity_id: str) -> uuid.UUID:
    """The item's id in every store (the seed's externalId, Weaviate's object uuid): a pure function of its key.

    Why the user is part of it: entity ids are unique anyway, but a buggy caller writing another user's entity id
    then creates a separate object instead of overwriting the other user's.
    """
    return uuid.uuid5(ITEM_NAMESPACE, f"{user_id}\x1f{source_entity_type.value}\x1f{source_entity_id}")


class ItemKey(NamedTuple):
    source_entity_type: SourceEntityType
    source_entity_id: str


@dataclass(frozen=True)
class KnowledgeItem:
    """What one Postgres entity looks like in the vector store, before it is embedded (built by texts.py)."""

    user_id: str
    source_entity_type: SourceEntityType
    source_entity_id: str
    title: str
    text_content: str
    embedding_text: str
    created_at: datetime
    importance_score: float | None = None
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        what = f"{self.source_entity_type.value} {self.source_entity_id!r} of user {self.user_id!r}"
        if not self.user_id:
            raise ValueError(f"vector item {what}: user_id is empty")
        try:
            uuid.UUID(self.source_entity_id)
        except ValueError:
            raise ValueError(f"vector item {what}: source_entity_id must be a UUID (the seed's uuid type)") from None
        if self.created_at.tzinfo is None:
            raise ValueError(f"vector item {what}: created_at must be timezone-aware")
        if not self.embedding_text.strip():
            raise ValueError(f"vector item {what}: nothing to embed (empty text)")

    @property
    def key(self) -> ItemKey:
        return ItemKey(self.source_entity_type, self.source_entity_id)

    @property
    def external_id(self) -> uuid.UUID:
        return item_uuid(self.user_id, self.source_entity_type, self.source_entity_id)

    @property
    def embedding_hash(self) -> str:
        """sha256 of the text embedded for it: a stored vector with the same hash (in the same model's space) is
        this item's vector, whatever else changed (its importance, say), so it is reused instead of embedded again."""
        return hashlib.sha256(self.embedding_text.encode()).hexdigest()

    @property
    def content_hash(self) -> str:
        """sha256 of everything stored but the vector; the embedded text is in it, so a new recipe shows as drift."""
        payload = [
            self.source_entity_type.value,
            self.source_entity_id,
            self.title,
            self.text_content,
            self.embedding_text,
            self.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            self.importance_score,
            list(self.tags),
        ]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class VectorItem:
    """A KnowledgeItem with its vector, in the space named by `embedding_model_version`."""

    item: KnowledgeItem
    vector: Sequence[float]
    embedding_model_version: str


@dataclass(frozen=True)
class VectorHit:
    """One search result: the stored item (without its vector) and its cosine similarity to the query (≤ 1)."""

    user_id: str
    source_entity_type: SourceEntityType
    source_entity_id: str
    title: str
    text_content: str
    created_at: datetime
    importance_score: float | None
    tags: tuple[str, ...]
    embedding_model_version: str
    score: float

    @property
    def key(self) -> ItemKey:
        return ItemKey(self.source_entity_type, self.source_entity_id)


@dataclass(frozen=True)
class StoredVector:
    """A vector a store holds for an item, in its current model's space, and what it was made from."""

    content_hash: str
    """The stored item's content hash (equal to the item's: nothing to write)."""
    embedding_hash: str | None
    """The stored item's embedding hash (equal to the item's: its vector can be reused); None for an item stored
    before stores recorded it."""
    vector: list[float]


class Fingerprint(NamedTuple):
    """What reconciliation compares per item: the content hash and the model the vector was made with."""

    content_hash: str
    embedding_model_version: str


class VectorStoreUnavailable(TransientError):
    """The store cannot be reached or failed; the message names it. The outbox retries the row later."""


class VectorStoreMismatch(PermanentError):
    """An item does not fit the store's embedding space (another model or dimension); re-embed it."""


class VectorStore(ABC):
    """The port. Every method takes the user id; nothing of another user is ever read, counted or deleted."""

    backend: ClassVar[str]

    def __init__(self, space: EmbeddingSpace) -> None:
        self.model_version = space.model_version
        self.dimension = space.dimension

    def _check(self, items: Sequence[VectorItem]) -> None:
        for entry in items:
            if entry.embedding_model_version != self.model_version or len(entry.vector) != self.dimension:
                item = entry.item
                raise VectorStoreMismatch(
                    f"vector item {item.source_entity_type.value} {item.source_entity_id} of user {item.user_id}: "
                    f"made with {entry.embedding_model_version} ({len(entry.vector)} dimensions) but the store "
                    f"holds {self.model_version} ({self.dimension}); embed it with the configured model"
                )

    def _check_query(self, vector: Sequence[float], limit: int) -> None:
        if len(vector) != self.dimension:
            raise VectorStoreMismatch(
                f"query vector has {len(vector)} dimensions, the store holds {self.model_version} ({self.dimension})"
            )
        if not 1 <= limit <= 1000:
            raise ValueError(f"search limit must be between 1 and 1000, got {limit}")

    @abstractmethod
    async def upsert(self, items: Sequence[VectorItem]) -> None:
        """Insert or replace each item by its key; replaying the same items changes nothing."""

    @abstractmethod
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
        """The user's items nearest to `vector` in the current model's space, best first; filters are ANDed and the
        time range is created_from <= createdAt < created_before."""

    @abstractmethod
    async def stored_vectors(self, user_id: str, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredVector]:
        """The vectors the store holds for these items of the user in the current model's space, by key; an item it
        does not hold, or holds made by another model, is left out."""

    @abstractmethod
    async def delete_entity(self, user_id: str, source_entity_type: SourceEntityType, source_entity_id: str) -> bool:
        """Remove the entity's item; False when there was none."""

    @abstractmethod
    async def delete_user(self, user_id: str) -> int:
        """Remove every item of the user; returns how many there were."""

    @abstractmethod
    async def counts(self, user_id: str) -> dict[SourceEntityType, int]:
        """Items per source entity type (every type, zeros included), whatever model made them."""

    @abstractmethod
    async def fingerprints(
        self, user_id: str, source_entity_type: SourceEntityType | None = None
    ) -> dict[ItemKey, Fingerprint]:
        """Every item of the user (of one type, if given) with its content hash and model version."""

    @abstractmethod
    async def held_users(self) -> list[str]:
        """Every user id the store holds items (or, in Weaviate, a tenant) of, sorted. The one read that is not one
        user's: reconcile compares it with Postgres to find users Postgres no longer has (orphans)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
