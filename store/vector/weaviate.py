"""The Weaviate adapter (weaviate-client v4, async): the seed's `UserKnowledgeItem` collection, one tenant per user.

Every Weaviate call of Orrery is in this module. The collection is created from the seed's class (000, V9.7, part 3)
with the seed's properties mapped onto current data types (docs/store.md, "Vector store and embeddings"):
`string` → `text` with `field` tokenization (whole-value matching, what an id needs), `indexInverted: true` →
`index_filterable` (plus `index_range_filters` on the date and number, `index_searchable` on word-tokenized text),
`vectorizer: none` → one self-provided named vector, "default", HNSW with cosine distance. Orrery adds two
properties: `contentHash`, which reconciliation compares, and `embeddingHash`, which tells whether a stored vector
was made from an item's current text (then it is reused instead of embedded again).

Why multi-tenancy (one tenant per user) rather than a userId filter on a shared index:
- isolation is enforced by Weaviate: a read or write names its tenant, and no query can reach another's objects;
- each tenant has its own HNSW index, so a small user's search is not a filtered walk through everyone's graph;
- forgetting a user is removing the tenant, after which nothing of theirs is left to count;
- reconciliation iterates a tenant with Weaviate's cursor, which a filter cannot be combined with.
The userId property is still written, as the seed's shape has it. Needs Weaviate ≥ 1.25 (auto tenant creation).
Object uuids are `item_uuid(user, type, entity id)` (uuid5), so an upsert replaces instead of duplicating.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import weaviate
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import WeaviateBaseError

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
    VectorStoreUnavailable,
    item_uuid,
)

COLLECTION = "UserKnowledgeItem"
VECTOR_NAME = "default"
GRPC_PROBE_TENANT = "orrery-grpc-probe"
"""A tenant name looked up (never created) on connect: the cheapest call that goes over gRPC."""
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RETURNED = [
    "userId",
    "sourceEntityType",
    "sourceEntityId",
    "title",
    "textContent",
    "createdAt",
    "importanceScore",
    "tags",
    "embeddingModelVersion",
]


def _identifier(name: str, data_type: DataType, **flags: Any) -> Property:
    """The seed's `string` + `indexInverted: true`: exact-match text, filterable, not part of keyword search."""
    return Property(
        name=name,
        data_type=data_type,
        tokenization=Tokenization.FIELD,
        index_filterable=True,
        index_searchable=False,
        **flags,
    )


PROPERTIES = [
    Property(name="externalId", data_type=DataType.UUID),
    _identifier("userId", DataType.TEXT),
    _identifier("sourceEntityType", DataType.TEXT),
    Property(name="sourceEntityId", data_type=DataType.UUID, index_filterable=True),
    Property(name="textContent", data_type=DataType.TEXT),
    Property(
        name="title",
        data_type=DataType.TEXT,
        tokenization=Tokenization.WORD,
        index_filterable=True,
        index_searchable=True,
    ),
    _identifier("embeddingModelVersion", DataType.TEXT),
    Property(name="createdAt", data_type=DataType.DATE, index_filterable=True, index_range_filters=True),
    Property(name="importanceScore", data_type=DataType.NUMBER, index_filterable=True, index_range_filters=True),
    Property(
        name="tags",
        data_type=DataType.TEXT_ARRAY,
        tokenization=Tokenization.WORD,
        index_filterable=True,
        index_searchable=True,
    ),
    Property(
        name="contentHash",
        data_type=DataType.TEXT,
        tokenization=Tokenization.FIELD,
        index_filterable=False,
        index_searchable=False,
    ),
    EMBEDDING_HASH := Property(
        name="embeddingHash",
        data_type=DataType.TEXT,
        tokenization=Tokenization.FIELD,
        index_filterable=False,
        index_searchable=False,
    ),
]
"""The seed's class (000, V9.7), property by property, plus contentHash and embeddingHash."""
FETCH_PAGE = 1000
"""Objects fetched by id per request (Weaviate caps a query's results; 10,000 by default)."""


def connection_params(url: str) -> dict[str, Any]:
    """WEAVIATE_URL → the client's HTTP and gRPC endpoints. gRPC is on 50051 (443 with https) unless the URL says
    `?grpc_port=N` (and `&grpc_host=H` for Weaviate Cloud's separate gRPC host)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    query = parse_qs(parts.query)
    host = parts.hostname or "localhost"
    return {
        "http_host": host,
        "http_port": parts.port or (443 if secure else 8080),
        "http_secure": secure,
        "grpc_host": query.get("grpc_host", [host])[0],
        "grpc_port": int(query.get("grpc_port", ["443" if secure else "50051"])[0]),
        "grpc_secure": secure,
    }


def tenant_of(user_id: str) -> str:
    if not _TENANT_NAME.match(user_id):
        raise PermanentError(
            f"user id {user_id!r} cannot name a Weaviate tenant (letters, digits, '-' and '_', at most 64)"
        )
    return user_id


class WeaviateVectorStore(VectorStore):
    """VectorStore on a Weaviate server; open with `connect`, close with `close`."""

    backend = "weaviate"

    def __init__(self, client: weaviate.WeaviateAsyncClient, space: EmbeddingSpace, where: str) -> None:
        super().__init__(space)
        self._client = client
        self._where = where
        self._collection = client.collections.use(COLLECTION)

    @classmethod
    async def connect(
        cls, url: str, space: EmbeddingSpace, *, api_key: str | None = None, timeout_s: float = 30.0
    ) -> WeaviateVectorStore:
        """Connect, create the collection when it is missing, check that an existing one is multi-tenant, and make one
        gRPC call (a tenant lookup), which searches and writes need.

        The client's own start-up checks are skipped: besides a gRPC health check they ask pypi.org for the latest
        client version, which a worker in a closed network would wait `timeout_s` for (and the tests may reach only
        this machine). The tenant lookup checks gRPC instead."""
        where = f"Weaviate at {url.split('?')[0]}"
        client = weaviate.use_async_with_custom(
            **connection_params(url),
            auth_credentials=Auth.api_key(api_key) if api_key else None,
            additional_config=AdditionalConfig(timeout=Timeout(init=timeout_s, query=timeout_s, insert=timeout_s)),
            skip_init_checks=True,
        )
        try:
            await client.connect()
            store = cls(client, space, where)
            await store._ensure_collection()
            await store._collection.tenants.get_by_names([GRPC_PROBE_TENANT])
        except WeaviateBaseError as exc:
            await client.close()
            raise VectorStoreUnavailable(f"{where}: cannot connect or prepare {COLLECTION}: {_detail(exc)}") from None
        except BaseException:
            await client.close()
            raise
        return store

    async def _ensure_collection(self) -> None:
        if not await self._client.collections.exists(COLLECTION):
            try:
                await self._client.collections.create(
                    COLLECTION,
                    description="A unified searchable item representing textual content from any source entity.",
                    properties=PROPERTIES,
                    vector_config=Configure.Vectors.self_provided(
                        name=VECTOR_NAME,
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
                    ),
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
                    ),
                )
                return
            except WeaviateBaseError:
                if not await self._client.collections.exists(COLLECTION):  # else another process created it
                    raise
        config = await self._collection.config.get()
        if not config.multi_tenancy_config.enabled:
            raise PermanentError(
                f"{self._where}: collection {COLLECTION} exists without multi-tenancy; Orrery keeps one tenant per "
                f"user. Delete the collection (it is rebuilt from Postgres with `run.py rebuild --vector`)"
            )
        if EMBEDDING_HASH.name not in {prop.name for prop in config.properties}:  # a collection of an older Orrery
            try:
                await self._collection.config.add_property(EMBEDDING_HASH)
            except WeaviateBaseError:
                config = await self._collection.config.get()  # another process may have added it meanwhile
                if EMBEDDING_HASH.name not in {prop.name for prop in config.properties}:
                    raise

    async def _has_tenant(self, tenant: str) -> bool:
        return bool(await self._collection.tenants.exists(tenant))

    async def upsert(self, items: Sequence[VectorItem]) -> None:
        self._check(items)
        by_tenant: dict[str, list[DataObject[Any, Any]]] = defaultdict(list)
        for entry in items:
            item = entry.item
            by_tenant[tenant_of(item.user_id)].append(
                DataObject(
                    uuid=item.external_id,
                    vector={VECTOR_NAME: list(entry.vector)},
                    properties=_without_nulls(
                        {
                            "externalId": str(item.external_id),
                            "userId": item.user_id,
                            "sourceEntityType": item.source_entity_type.value,
                            "sourceEntityId": item.source_entity_id,
                            "textContent": item.text_content,
                            "title": item.title,
                            "embeddingModelVersion": entry.embedding_model_version,
                            "createdAt": item.created_at,
                            "importanceScore": item.importance_score,
                            "tags": list(item.tags),
                            "contentHash": item.content_hash,
                            "embeddingHash": item.embedding_hash,
                        }
                    ),
                )
            )
        for tenant, objects in by_tenant.items():
            try:
                result = await self._collection.with_tenant(tenant).data.insert_many(objects)
            except WeaviateBaseError as exc:
                raise VectorStoreUnavailable(
                    f"{self._where}: upsert for user {tenant} failed: {_detail(exc)}"
                ) from None
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise VectorStoreUnavailable(
                    f"{self._where}: {len(result.errors)} of {len(objects)} items for user {tenant} were not "
                    f"written ({first.message}); the outbox retries them"
                )

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
        tenant = tenant_of(user_id)
        conditions = [Filter.by_property("embeddingModelVersion").equal(self.model_version)]
        if entity_types is not None:
            if not entity_types:
                return []
            conditions.append(Filter.by_property("sourceEntityType").contains_any([t.value for t in entity_types]))
        if created_from is not None:
            conditions.append(Filter.by_property("createdAt").greater_or_equal(created_from))
        if created_before is not None:
            conditions.append(Filter.by_property("createdAt").less_than(created_before))
        try:
            if not await self._has_tenant(tenant):
                return []
            response = await self._collection.with_tenant(tenant).query.near_vector(
                near_vector=list(vector),
                target_vector=VECTOR_NAME,
                limit=limit,
                filters=Filter.all_of(conditions),
                return_metadata=MetadataQuery(distance=True),
                return_properties=_RETURNED,
            )
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: search for user {tenant} failed: {_detail(exc)}") from None
        hits = []
        for obj in response.objects:
            distance = obj.metadata.distance if obj.metadata.distance is not None else 1.0
            hits.append(_hit(obj.properties, 1.0 - distance))
        return hits

    async def stored_vectors(self, user_id: str, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredVector]:
        tenant = tenant_of(user_id)
        ids = sorted({item_uuid(user_id, *key) for key in keys}, key=str)
        found: dict[ItemKey, StoredVector] = {}
        try:
            if not ids or not await self._has_tenant(tenant):
                return found
            for start in range(0, len(ids), FETCH_PAGE):
                page = ids[start : start + FETCH_PAGE]
                response = await self._collection.with_tenant(tenant).query.fetch_objects(
                    filters=Filter.by_id().contains_any(page)
                    & Filter.by_property("embeddingModelVersion").equal(self.model_version),
                    limit=len(page),
                    include_vector=[VECTOR_NAME],
                    return_properties=["sourceEntityType", "sourceEntityId", "contentHash", "embeddingHash"],
                )
                for obj in response.objects:
                    props = obj.properties
                    vector = obj.vector.get(VECTOR_NAME) if isinstance(obj.vector, dict) else None
                    if not isinstance(vector, list) or len(vector) != self.dimension:
                        continue  # not a single vector of this store's size (a multi-vector, another space)
                    key = ItemKey(SourceEntityType(str(props["sourceEntityType"])), str(props["sourceEntityId"]))
                    hashed = props.get("embeddingHash")
                    found[key] = StoredVector(
                        str(props["contentHash"]),
                        str(hashed) if hashed else None,
                        [float(x) for x in vector],  # type: ignore[arg-type]
                    )
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(
                f"{self._where}: reading vectors of user {tenant} failed: {_detail(exc)}"
            ) from None
        return found

    async def delete_entity(self, user_id: str, source_entity_type: SourceEntityType, source_entity_id: str) -> bool:
        tenant = tenant_of(user_id)
        try:
            if not await self._has_tenant(tenant):
                return False
            deleted = await self._collection.with_tenant(tenant).data.delete_by_id(
                item_uuid(user_id, source_entity_type, source_entity_id)
            )
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: delete for user {tenant} failed: {_detail(exc)}") from None
        return bool(deleted)

    async def delete_user(self, user_id: str) -> int:
        tenant = tenant_of(user_id)
        try:
            if not await self._has_tenant(tenant):
                return 0
            count = sum((await self.counts(user_id)).values())
            await self._collection.tenants.remove([tenant])
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: removing user {tenant} failed: {_detail(exc)}") from None
        return count

    async def counts(self, user_id: str) -> dict[SourceEntityType, int]:
        tenant = tenant_of(user_id)
        found: dict[SourceEntityType, int] = {}
        try:
            if await self._has_tenant(tenant):
                result = await self._collection.with_tenant(tenant).aggregate.over_all(
                    group_by=GroupByAggregate(prop="sourceEntityType"), total_count=True
                )
                for group in result.groups:
                    found[SourceEntityType(str(group.grouped_by.value))] = int(group.total_count or 0)
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: counting user {tenant} failed: {_detail(exc)}") from None
        return {kind: found.get(kind, 0) for kind in SourceEntityType}

    async def fingerprints(
        self, user_id: str, source_entity_type: SourceEntityType | None = None
    ) -> dict[ItemKey, Fingerprint]:
        tenant = tenant_of(user_id)
        prints: dict[ItemKey, Fingerprint] = {}
        try:
            if not await self._has_tenant(tenant):
                return prints
            iterator = self._collection.with_tenant(tenant).iterator(
                return_properties=["sourceEntityType", "sourceEntityId", "contentHash", "embeddingModelVersion"]
            )
            async for obj in iterator:
                props = obj.properties
                kind = SourceEntityType(str(props["sourceEntityType"]))
                if source_entity_type is None or kind is source_entity_type:
                    key = ItemKey(kind, str(props["sourceEntityId"]))
                    prints[key] = Fingerprint(str(props["contentHash"]), str(props["embeddingModelVersion"]))
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: reading user {tenant} failed: {_detail(exc)}") from None
        return prints

    async def held_users(self) -> list[str]:
        """The tenants: one per user, an empty one included (forget-user removes it, a late write recreates it)."""
        try:
            tenants = await self._collection.tenants.get()
        except WeaviateBaseError as exc:
            raise VectorStoreUnavailable(f"{self._where}: listing tenants failed: {_detail(exc)}") from None
        return sorted(tenants)

    async def close(self) -> None:
        await self._client.close()


def _detail(exc: BaseException) -> str:
    """The client's message on one line (it spreads some over several)."""
    return " ".join(str(exc).split())[:500]


def _without_nulls(properties: dict[str, Any]) -> dict[str, Any]:
    """An absent importance is left out: an unset property, as the seed's optional fields are."""
    return {name: value for name, value in properties.items() if value is not None}


def _hit(props: Any, score: float) -> VectorHit:
    created = props["createdAt"]
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    importance = props.get("importanceScore")
    return VectorHit(
        user_id=str(props["userId"]),
        source_entity_type=SourceEntityType(str(props["sourceEntityType"])),
        source_entity_id=str(props["sourceEntityId"]),
        title=str(props["title"]),
        text_content=str(props.get("textContent") or ""),
        created_at=created,
        importance_score=float(importance) if importance is not None else None,
        tags=tuple(props.get("tags") or ()),
        embedding_model_version=str(props["embeddingModelVersion"]),
        score=score,
    )
