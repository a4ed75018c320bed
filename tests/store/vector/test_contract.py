"""The VectorStore contract: one test class, run against every available backend (pgvector always, Weaviate when
WEAVIATE_URL is set), with vectors from the real local model."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from agents.embeddings import LocalEmbedder
from agents.llm import CallContext
from store.reconcile import Orphans, find_orphans, remove_orphans
from store.vector.base import (
    Fingerprint,
    KnowledgeItem,
    SourceEntityType,
    VectorItem,
    VectorStore,
    VectorStoreMismatch,
)
from tests.store.orphans import delete_user_row_only
from tests.store.vector.conftest import new_user

MU, CONCEPT, ARTIFACT = SourceEntityType.MEMORY_UNIT, SourceEntityType.CONCEPT, SourceEntityType.DERIVED_ARTIFACT
DAY0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = CallContext(user_id="tests", agent="vector_contract")

CORPUS: list[tuple[SourceEntityType, str, str, int]] = [
    (MU, "Morning run by the river", "Ran 8 km along the river before work and felt calm all day.", 0),
    (MU, "Emma's bakery opened", "My sister Emma opened her bakery in Lisbon; the first customers loved it.", 1),
    (MU, "Tax return stress", "Spent the evening sorting receipts for the quarterly tax return.", 2),
    (CONCEPT, "Emma", "younger sister, lives in Lisbon, runs a bakery", 3),
    (CONCEPT, "Running", "a habit that keeps me steady", 4),
    (ARTIFACT, "Insight: movement and mood", "On days with a morning run the user reports a calmer mood.", 5),
]


def knowledge(
    user_id: str, kind: SourceEntityType, title: str, text: str, day: int, **changes: object
) -> KnowledgeItem:
    item = KnowledgeItem(
        user_id=user_id,
        source_entity_type=kind,
        source_entity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{user_id}/{title}")),
        title=title,
        text_content=text,
        embedding_text=f"{title}\n{text}",
        created_at=DAY0 + timedelta(days=day),
        importance_score=float(day),
        tags=("test",),
    )
    return replace(item, **changes) if changes else item  # type: ignore[arg-type]


async def embedded(embedder: LocalEmbedder, items: Sequence[KnowledgeItem]) -> list[VectorItem]:
    vectors = await embedder.embed([item.embedding_text for item in items], context=CONTEXT)
    return [VectorItem(item, vector, embedder.model_version) for item, vector in zip(items, vectors, strict=True)]


async def query(embedder: LocalEmbedder, text: str) -> list[float]:
    return (await embedder.embed([text], context=CONTEXT))[0]


class TestVectorStoreContract:
    """What every adapter must do; `store` is parametrized over the backends in conftest.py."""

    @pytest.fixture
    async def alice(self, pool: asyncpg.Pool, make_user: list[str]) -> str:
        return await new_user(pool, make_user)

    @pytest.fixture
    async def bob(self, pool: asyncpg.Pool, make_user: list[str]) -> str:
        return await new_user(pool, make_user)

    @pytest.fixture
    async def alice_items(self, store: VectorStore, embedder: LocalEmbedder, alice: str) -> list[KnowledgeItem]:
        items = [knowledge(alice, *row) for row in CORPUS]
        await store.upsert(await embedded(embedder, items))
        return items

    async def test_search_ranks_the_closest_meaning_first(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        hits = await store.search(alice, await query(embedder, "jogging along the water in the morning"), limit=3)
        assert hits[0].title == "Morning run by the river"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert 0 < hits[0].score <= 1.0 + 1e-6
        top = hits[0]
        assert (top.user_id, top.source_entity_type, top.tags) == (alice, MU, ("test",))
        assert top.created_at == DAY0 and top.importance_score == 0.0
        assert top.embedding_model_version == embedder.model_version
        sister = await store.search(alice, await query(embedder, "my sister's new shop in Portugal"), limit=2)
        assert {h.title for h in sister} == {"Emma's bakery opened", "Emma"}

    async def test_replays_write_nothing_twice(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        before = await store.fingerprints(alice)
        again = await embedded(embedder, alice_items)
        await store.upsert(again)
        await store.upsert(list(reversed(again)))
        assert await store.counts(alice) == {MU: 3, CONCEPT: 2, ARTIFACT: 1}
        assert await store.fingerprints(alice) == before
        hits = await store.search(alice, await query(embedder, "anything at all"), limit=50)
        assert len(hits) == len({h.key for h in hits}) == len(alice_items)

    async def test_an_upsert_replaces_the_items_content(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        old = alice_items[2]
        new = replace(old, title="Tax return filed", text_content="Filed it early.", embedding_text="Tax filed early")
        await store.upsert(await embedded(embedder, [new]))
        assert (await store.counts(alice))[MU] == 3
        assert (await store.fingerprints(alice, MU))[old.key].content_hash == new.content_hash != old.content_hash
        hits = await store.search(alice, await query(embedder, "taxes"), limit=1)
        assert (hits[0].key, hits[0].title, hits[0].text_content) == (old.key, "Tax return filed", "Filed it early.")

    async def test_delete_an_entity(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        gone = alice_items[0]
        assert await store.delete_entity(alice, gone.source_entity_type, gone.source_entity_id) is True
        assert await store.delete_entity(alice, gone.source_entity_type, gone.source_entity_id) is False
        assert gone.key not in await store.fingerprints(alice)
        assert (await store.counts(alice))[MU] == 2
        hits = await store.search(alice, await query(embedder, "morning run by the river"), limit=10)
        assert gone.key not in {h.key for h in hits} and len(hits) == 5

    async def test_delete_a_user_leaves_nothing_of_theirs_and_everything_of_others(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, bob: str, alice_items: list[KnowledgeItem]
    ) -> None:
        await store.upsert(await embedded(embedder, [knowledge(bob, *CORPUS[0])]))
        assert await store.delete_user(alice) == len(alice_items)
        assert await store.delete_user(alice) == 0
        assert await store.counts(alice) == {MU: 0, CONCEPT: 0, ARTIFACT: 0}
        assert await store.fingerprints(alice) == {}
        assert await store.search(alice, await query(embedder, "morning run"), limit=10) == []
        assert (await store.counts(bob))[MU] == 1

    async def test_another_users_items_never_come_back(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, bob: str, alice_items: list[KnowledgeItem]
    ) -> None:
        """Bob holds the same texts under his own ids and one text closer to every query than any of Alice's."""
        bobs = [knowledge(bob, *row) for row in CORPUS]
        bobs.append(knowledge(bob, MU, "Morning run, jogging along the water", "jogging along the water", 9))
        await store.upsert(await embedded(embedder, bobs))
        probe = await query(embedder, "jogging along the water in the morning")
        searches = [
            await store.search(alice, probe, limit=50),
            await store.search(alice, probe, limit=1),
            await store.search(alice, probe, entity_types=[MU]),
            await store.search(alice, probe, created_from=DAY0, created_before=DAY0 + timedelta(days=30)),
        ]
        for hits in searches:
            assert hits and {h.user_id for h in hits} == {alice}
            assert {h.key for h in hits} <= {i.key for i in alice_items}
        assert set(await store.fingerprints(alice)) == {i.key for i in alice_items}
        assert sum((await store.counts(alice)).values()) == len(alice_items)
        target = bobs[-1]
        assert await store.delete_entity(alice, target.source_entity_type, target.source_entity_id) is False
        assert target.key in await store.fingerprints(bob)
        assert (await store.search(bob, probe, limit=1))[0].key == target.key

    async def test_filters_by_type_and_time_range(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        probe = await query(embedder, "Emma")

        async def keys(**filters: object) -> set[str]:
            hits = await store.search(alice, probe, limit=20, **filters)  # type: ignore[arg-type]
            return {h.title for h in hits}

        assert await keys(entity_types=[CONCEPT]) == {"Emma", "Running"}
        assert await keys(entity_types=[CONCEPT, ARTIFACT]) == {"Emma", "Running", "Insight: movement and mood"}
        assert await keys(entity_types=[]) == set()
        # created_from is inclusive, created_before exclusive: days 1, 2 and 3
        window = {"created_from": DAY0 + timedelta(days=1), "created_before": DAY0 + timedelta(days=4)}
        assert await keys(**window) == {"Emma's bakery opened", "Tax return stress", "Emma"}
        assert await keys(entity_types=[MU], **window) == {"Emma's bakery opened", "Tax return stress"}
        assert await keys(created_before=DAY0) == set()

    async def test_fingerprints_are_what_postgres_computes(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, alice_items: list[KnowledgeItem]
    ) -> None:
        version = embedder.model_version
        expected = {i.key: Fingerprint(i.content_hash, version) for i in alice_items}
        assert await store.fingerprints(alice) == expected
        assert await store.fingerprints(alice, CONCEPT) == {k: v for k, v in expected.items() if k[0] is CONCEPT}

    async def test_stored_vectors_are_the_vectors_written_with_what_they_were_made_from(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, bob: str, alice_items: list[KnowledgeItem]
    ) -> None:
        """What the dispatcher reuses and the projection lays out: the vector as written (float32), the item's
        content and embedding hashes; another user's items, unknown keys and another model's vectors left out."""
        written = await embedded(embedder, alice_items[:2])
        keys = [item.key for item in alice_items[:2]]
        stranger = knowledge(alice, MU, "never stored", "nothing", 9)
        found = await store.stored_vectors(alice, [*keys, stranger.key])
        assert set(found) == set(keys)
        for entry in written:
            stored = found[entry.item.key]
            assert (stored.content_hash, stored.embedding_hash) == (entry.item.content_hash, entry.item.embedding_hash)
            assert len(stored.vector) == embedder.dimension
            assert max(abs(a - b) for a, b in zip(stored.vector, entry.vector, strict=True)) < 1e-6
        assert await store.stored_vectors(bob, keys) == {}  # Bob asking for Alice's keys
        assert await store.stored_vectors(alice, []) == {}
        # only the importance moves: the content hash changes, the embedding hash (and so the vector) does not
        salient = replace(alice_items[0], importance_score=0.9)
        assert salient.embedding_hash == alice_items[0].embedding_hash != salient.content_hash
        await store.upsert([VectorItem(salient, written[0].vector, embedder.model_version)])
        again = (await store.stored_vectors(alice, [salient.key]))[salient.key]
        assert (again.content_hash, again.embedding_hash) == (salient.content_hash, salient.embedding_hash)

    async def test_a_small_user_next_to_a_big_one_gets_all_their_items(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, bob: str, alice_items: list[KnowledgeItem]
    ) -> None:
        """Bob's 1,500 items crowd the index; Alice's six must all come back, best first (exact order)."""
        rng = random.Random(7)
        crowd = []
        for n in range(1500):
            vector = [rng.gauss(0, 1) for _ in range(embedder.dimension)]
            item = knowledge(bob, MU, f"crowd {n}", "filler", 10)
            crowd.append(VectorItem(item, vector, embedder.model_version))
        await store.upsert(crowd)
        probe = await query(embedder, "sister")
        hits = await store.search(alice, probe, limit=10)
        assert {h.key for h in hits} == {i.key for i in alice_items}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    async def test_items_of_another_embedding_space_are_refused(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str
    ) -> None:
        item = knowledge(alice, *CORPUS[0])
        vector = (await embedded(embedder, [item]))[0].vector
        with pytest.raises(VectorStoreMismatch, match="text-embedding-3-small"):
            await store.upsert([VectorItem(item, vector, "text-embedding-3-small")])
        with pytest.raises(VectorStoreMismatch, match="1536"):
            await store.upsert([VectorItem(item, [0.1] * 1536, embedder.model_version)])
        with pytest.raises(VectorStoreMismatch, match="3 dimensions"):
            await store.search(alice, [0.1, 0.2, 0.3])
        assert await store.counts(alice) == {MU: 0, CONCEPT: 0, ARTIFACT: 0}

    async def test_held_users_are_every_user_with_an_item_sorted(
        self, store: VectorStore, embedder: LocalEmbedder, alice: str, bob: str, alice_items: list[KnowledgeItem]
    ) -> None:
        held = await store.held_users()
        assert alice in held and bob not in held and held == sorted(held)
        await store.upsert(await embedded(embedder, [knowledge(bob, *CORPUS[0])]))
        assert {alice, bob} <= set(await store.held_users())
        await store.delete_user(alice)
        held = await store.held_users()
        assert alice not in held and bob in held

    async def test_reconcile_finds_and_removes_what_a_store_holds_of_a_user_postgres_no_longer_has(
        self,
        store: VectorStore,
        embedder: LocalEmbedder,
        pool: asyncpg.Pool,
        alice: str,
        bob: str,
        alice_items: list[KnowledgeItem],
    ) -> None:
        """Alice's row goes while the store keeps her items (a dispatcher that wrote after forget-user): she is an
        orphan, removed through the port; Bob, in Postgres, is none. Only she is removed: a shared server may hold
        others' tenants."""
        await store.upsert(await embedded(embedder, [knowledge(bob, *CORPUS[0])]))
        assert not {alice, bob} & set((await find_orphans(pool, store)).user_ids)
        await delete_user_row_only(pool, alice)
        found = await find_orphans(pool, store)
        assert alice in found.user_ids and bob not in found.user_ids and found.held >= 2
        assert await remove_orphans(pool, store, Orphans(found.held, (alice, bob))) == len(alice_items)
        assert alice not in await store.held_users()  # and Bob, who exists (asked again), keeps everything
        assert alice not in (await find_orphans(pool, store)).user_ids
        assert await store.counts(alice) == {MU: 0, CONCEPT: 0, ARTIFACT: 0}
        assert (await store.counts(bob))[MU] == 1
