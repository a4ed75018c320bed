"""Round trips for what ingestion and insight write: memory units, concepts (dedupe, races, merges), growth events,
cards, edges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from store.repos import cards, concepts, conversations, growth_events, knowledge_edges, memory_units, users
from store.repos._base import NotFoundError, utc_now
from tests.store import testrows

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> str:
    await users.create_user(pool, "u-1", email="a@example.org")
    await conversations.create_conversation(pool, "u-1", conversation_id="c-1")
    await conversations.create_conversation(pool, "u-1", conversation_id="c-2")
    return "u-1"


async def test_memory_unit_round_trip_and_delete_by_conversation(pool: asyncpg.Pool, user: str) -> None:
    unit = await testrows.insert_memory_unit(
        pool,
        user,
        title="10k",
        content="Ran 10k",
        creation_ts=MOMENT,
        importance_score=8.0,
        sentiment_score=0.7,
        source_conversation_id="c-1",
        metadata={"key": "m1"},
        muid="mu-1",
    )
    assert (unit.muid, unit.user_id, unit.title, unit.content, unit.importance_score, unit.sentiment_score) == (
        "mu-1",
        user,
        "10k",
        "Ran 10k",
        8.0,
        0.7,
    )
    assert unit.creation_ts == MOMENT and unit.metadata == {"key": "m1"}
    assert unit.ingestion_ts.tzinfo is UTC and unit.last_modified_ts == unit.ingestion_ts
    other = await testrows.insert_memory_unit(
        pool,
        user,
        title="t",
        content="c",
        creation_ts=MOMENT + timedelta(hours=1),
        importance_score=None,
        sentiment_score=None,
        source_conversation_id="c-2",
    )
    assert await testrows.get_memory_unit(pool, user, "mu-1") == unit
    assert await memory_units.list_memory_units(pool, user) == [unit, other]
    assert await memory_units.list_memory_units(pool, user, source_conversation_id="c-2") == [other]
    assert await memory_units.memory_unit_ids_from_conversation(pool, user, "c-1") == ["mu-1"]
    assert await memory_units.delete_memory_units(pool, user, ["mu-1"]) == ["mu-1"]
    assert await memory_units.list_memory_units(pool, user) == [other]


async def test_memory_unit_needs_the_users_own_conversation(pool: asyncpg.Pool, user: str) -> None:
    with pytest.raises(NotFoundError):
        await testrows.insert_memory_unit(
            pool,
            user,
            title="t",
            content="c",
            creation_ts=MOMENT,
            importance_score=1,
            sentiment_score=0,
            source_conversation_id="missing",
        )


async def test_concepts_merge_absorb_and_regroup(pool: asyncpg.Pool, user: str) -> None:
    """The statements an insight's merge and communities make on concepts (store/insight_writes.py composes them)."""
    for key, name in (("k-1", "Morning Runs"), ("k-2", "Dawn jogging"), ("k-3", "Lena")):
        await testrows.create_concept(
            pool, user, name=name, type="activity", normalized_name=name.lower(), concept_id=key
        )
    primary = await concepts.lock_active_concept(pool, user, "k-1")
    assert primary is not None and primary.normalized_name == "morning runs" and primary.aliases == []
    await asyncio.sleep(0.01)
    merged = await concepts.mark_merged(pool, user, "k-1", ["k-2", "k-1", "missing"], at=utc_now())
    assert [(c.concept_id, c.status, c.merged_into_concept_id) for c in merged] == [("k-2", "merged", "k-1")]
    assert await concepts.mark_merged(pool, user, "k-1", ["k-2"], at=utc_now()) == []  # merged already: nothing
    assert await concepts.lock_active_concept(pool, user, "k-2") is None
    await concepts.absorb(pool, user, "k-1", aliases=["dawn jogging"], at=utc_now())
    kept = await testrows.get_concept(pool, user, "k-1")
    assert kept is not None and kept.aliases == ["dawn jogging"]
    assert kept.last_updated_ts > primary.last_updated_ts
    assert await concepts.set_salience(pool, user, {"k-1": 0.7, "k-3": 0.2, "missing": 0.9}) == ["k-1", "k-3"]
    assert await concepts.set_salience(pool, user, {"k-1": 0.7, "k-3": 0.25}) == ["k-3"]  # only what changed
    assert await concepts.set_salience(pool, user, {}) == []
    salient = await testrows.get_concept(pool, user, "k-1")
    assert salient is not None and salient.salience == 0.7
    assert salient.last_updated_ts == kept.last_updated_ts  # derived, not an edit: recency order unchanged
    assert await concepts.existing_concept_ids(pool, user, ["k-1", "k-2", "nope"]) == {"k-1", "k-2"}
    assert await concepts.existing_concept_ids(pool, user, ["k-1", "k-2"], active=True) == {"k-1"}
    assert await concepts.existing_concept_ids(pool, user, []) == set()

    await testrows.create_community(pool, user, name="Running", core_concept_ids=["k-1"], community_id="g-1")
    assert await concepts.regroup(pool, user, {"k-1": "g-1"}, at=utc_now()) == ["k-1"]
    assert await concepts.regroup(pool, user, {"k-1": "g-1"}, at=utc_now()) == []  # nothing changed
    assert sorted(await concepts.regroup(pool, user, {"k-3": "g-1"}, at=utc_now())) == ["k-1", "k-3"]
    assert [c.concept_id for c in await concepts.list_concepts(pool, user)] == ["k-3", "k-1"]  # by name
    assert [c.concept_id for c in await concepts.list_concepts(pool, user, status=None)] == ["k-2", "k-3", "k-1"]


def wanted(
    name: str, type: str = "person", existing: str | None = None, description: str | None = None
) -> concepts.NewConcept:
    return concepts.NewConcept(
        name=name,
        type=type,
        description=description,
        normalized_name=name.lower().strip(" !"),
        existing_concept_id=existing,
    )


async def test_ensure_concepts_reuses_by_handle_name_and_alias_and_creates_the_rest(
    pool: asyncpg.Pool, user: str
) -> None:
    await testrows.create_concept(
        pool, user, name="Lena", type="person", description=None, normalized_name="lena", concept_id="k-lena"
    )
    await testrows.create_concept(
        pool, user, name="Dani", type="person", description="coach", normalized_name="dani", concept_id="k-dani"
    )
    await concepts.absorb(pool, user, "k-dani", aliases=["coach dani"], at=utc_now())
    before = await testrows.get_concept(pool, user, "k-lena")
    await asyncio.sleep(0.01)

    result = await concepts.ensure_concepts(
        pool,
        user,
        [
            wanted("Sister", existing="k-lena", description="Younger sister"),  # the model's handle wins over the name
            wanted("Coach Dani"),  # an alias
            wanted("Half marathon", type="goal"),
            wanted("half marathon!", type="goal"),  # the same new concept twice: one row, created once
            wanted("Lena", type="place"),  # same name, another type: another concept
            wanted("Ghost", existing="no-such-id"),  # a stale handle: created by name
        ],
    )

    assert [r.created for r in result] == [False, False, True, False, True, True]
    assert [r.concept_id for r in result[:2]] == ["k-lena", "k-dani"]
    assert result[3].concept_id == result[2].concept_id
    assert len({r.concept_id for r in result}) == 5
    rows = await concepts.list_concepts(pool, user)
    assert sorted((c.name, c.type) for c in rows) == [
        ("Dani", "person"),
        ("Ghost", "person"),
        ("Half marathon", "goal"),
        ("Lena", "person"),
        ("Lena", "place"),
    ]
    lena = await testrows.get_concept(pool, user, "k-lena")
    assert before is not None and lena is not None
    assert lena.description == "Younger sister" and lena.last_updated_ts > before.last_updated_ts  # touched
    created = next(c for c in rows if c.name == "Half marathon")
    assert created.normalized_name == "half marathon" and created.aliases == []


async def test_ensure_concepts_takes_over_surface_names_and_follows_merges(pool: asyncpg.Pool, user: str) -> None:
    await pool.execute(
        "INSERT INTO concepts (concept_id, user_id, name, type, last_updated_ts) "
        "VALUES ('web', 'u-1', 'Priya', 'person', now())"
    )  # the web app's row, no normalized name
    await testrows.create_concept(
        pool, user, name="Running", type="activity", description=None, normalized_name="running", concept_id="old"
    )
    await testrows.create_concept(
        pool, user, name="Runs", type="activity", description=None, normalized_name="runs", concept_id="new"
    )
    await pool.execute("UPDATE concepts SET status = 'merged', merged_into_concept_id = 'new' WHERE concept_id = 'old'")

    result = await concepts.ensure_concepts(pool, user, [wanted("Priya"), wanted("Running", type="activity")])

    assert result == [concepts.EnsuredConcept("web", created=False), concepts.EnsuredConcept("new", created=False)]
    web = await testrows.get_concept(pool, user, "web")
    assert web is not None and web.normalized_name == "priya"
    assert await pool.fetchval("SELECT count(*) FROM concepts WHERE user_id = 'u-1'") == 3
    assert await concepts.ensure_concepts(pool, user, []) == []


async def test_racing_batches_make_one_concept(pool: asyncpg.Pool, user: str) -> None:
    """Concurrent ingestions of the same new concept, inside their own transactions (the lock is held until
    commit, so the later one finds the first one's row) or not: one row."""

    async def batch(name: str) -> str:
        async with pool.acquire() as conn, conn.transaction():
            (made,) = await concepts.ensure_concepts(conn, user, [wanted(name, type="place")])
            await asyncio.sleep(0.05)
            return made.concept_id

    async def outside(name: str) -> str:
        (made,) = await concepts.ensure_concepts(pool, user, [wanted(name, type="place")])
        return made.concept_id

    ids = await asyncio.gather(batch("Lisbon"), batch("lisbon"), outside("LISBON"), outside("lisbon!"))
    assert len(set(ids)) == 1
    assert await pool.fetchval("SELECT count(*) FROM concepts WHERE user_id = 'u-1'") == 1


async def test_insert_memory_units_all_or_nothing(pool: asyncpg.Pool, user: str) -> None:
    def unit(muid: str, conversation: str | None) -> memory_units.NewMemoryUnit:
        return memory_units.NewMemoryUnit(
            muid=muid,
            title=f"t-{muid}",
            content="c",
            creation_ts=MOMENT,
            importance_score=7.5,
            sentiment_score=-0.25,
            source_conversation_id=conversation,
            metadata={"key": muid},
        )

    assert await memory_units.insert_memory_units(pool, user, [unit("a", "c-1"), unit("b", None)]) == 2
    a = await testrows.get_memory_unit(pool, user, "a")
    assert a is not None and (a.title, a.creation_ts, a.importance_score, a.sentiment_score, a.metadata) == (
        "t-a",
        MOMENT,
        7.5,
        -0.25,
        {"key": "a"},
    )
    with pytest.raises(NotFoundError, match="missing"):
        await memory_units.insert_memory_units(pool, user, [unit("c", "c-2"), unit("d", "missing")])
    assert [u.muid for u in await memory_units.list_memory_units(pool, user)] == ["a", "b"]
    assert await memory_units.insert_memory_units(pool, user, []) == 0


async def test_growth_events_round_trip(pool: asyncpg.Pool, user: str) -> None:
    event = await testrows.insert_growth_event(
        pool,
        user,
        entity_id="mu-1",
        entity_type="MemoryUnit",
        dim_key="act_self",
        delta=0.5,
        source="ingestion",
        details={"rationale": "ran", "source_conversation_id": "c-1"},
        event_id="g-1",
    )
    assert (event.event_id, event.entity_id, event.entity_type, event.dim_key, event.delta, event.source) == (
        "g-1",
        "mu-1",
        "MemoryUnit",
        "act_self",
        0.5,
        "ingestion",
    )
    assert event.details == {"rationale": "ran", "source_conversation_id": "c-1"} and event.created_at.tzinfo is UTC
    await testrows.insert_growth_event(
        pool,
        user,
        entity_id="k-1",
        entity_type="Concept",
        dim_key="act_self",
        delta=-0.25,
        source="ingestion",
        details={"source_conversation_id": "c-2"},
    )
    await testrows.insert_growth_event(
        pool,
        user,
        entity_id="k-1",
        entity_type="Concept",
        dim_key="know_self",
        delta=1.0,
        source="ingestion",
        details=None,
    )
    assert await growth_events.growth_by_dimension(pool, user) == {"act_self": 0.25, "know_self": 1.0}
    assert [e.event_id for e in await testrows.list_growth_events(pool, user, entity_id="mu-1")] == ["g-1"]
    assert len(await testrows.list_growth_events(pool, user)) == 3
    assert await growth_events.delete_growth_events_from_conversation(pool, user, "c-1") == 1
    assert await growth_events.growth_by_dimension(pool, user) == {"act_self": -0.25, "know_self": 1.0}


async def test_cards_are_one_per_entity_and_update_their_timestamp(pool: asyncpg.Pool, user: str) -> None:
    card, created = await cards.ensure_card(
        pool,
        user,
        card_type="memory",
        source_entity_id="mu-1",
        source_entity_type="MemoryUnit",
        display_data={"title": "10k"},
        card_id="card-1",
    )
    assert created
    assert (card.card_id, card.card_type, card.status, card.is_favorited, card.is_synced, card.display_data) == (
        "card-1",
        "memory",
        "active_canvas",
        False,
        True,
        {"title": "10k"},
    )
    assert card.updated_at == card.created_at
    again, created_again = await cards.ensure_card(
        pool,
        user,
        card_type="memory",
        source_entity_id="mu-1",
        source_entity_type="MemoryUnit",
        display_data={"title": "other"},
    )
    assert (again, created_again) == (card, False)
    racing = await asyncio.gather(
        *(
            cards.ensure_card(
                pool, user, card_type="concept", source_entity_id="k-1", source_entity_type="Concept", display_data=None
            )
            for _ in range(5)
        )
    )
    assert sum(made for _, made in racing) == 1 and len({c.card_id for c, _ in racing}) == 1

    assert next(c.card_id for c in await cards.list_cards(pool, user, status="active_canvas")) == "card-1"
    assert len(await cards.list_cards(pool, user)) == 2 and await cards.list_cards(pool, user, status="completed") == []
    assert await cards.delete_cards_for_entities(pool, user, ["mu-1", "k-1", "other"]) == 2
    assert await cards.list_cards(pool, user) == []


async def test_edges_upsert_to_the_stronger_and_delete(pool: asyncpg.Pool, user: str) -> None:
    edge = await testrows.upsert_edge(
        pool,
        user,
        source_id="mu-1",
        source_type="MemoryUnit",
        target_id="k-1",
        target_type="Concept",
        relationship_type="IS_ABOUT",
        strength=0.6,
        description="first",
        source_conversation_id="c-1",
        edge_id="e-1",
    )
    assert (edge.edge_id, edge.strength, edge.description, edge.source_conversation_id) == (
        "e-1",
        0.6,
        "first",
        "c-1",
    )
    weaker = await testrows.upsert_edge(
        pool,
        user,
        source_id="mu-1",
        source_type="MemoryUnit",
        target_id="k-1",
        target_type="Concept",
        relationship_type="IS_ABOUT",
        strength=0.3,
        description="second",
        source_conversation_id="c-2",
    )
    assert (weaker.edge_id, weaker.strength, weaker.description, weaker.source_conversation_id) == (
        "e-1",
        0.6,
        "second",
        "c-1",
    )
    assert weaker.updated_at >= edge.updated_at
    stronger = await testrows.upsert_edge(
        pool,
        user,
        source_id="mu-1",
        source_type="MemoryUnit",
        target_id="k-1",
        target_type="Concept",
        relationship_type="IS_ABOUT",
        strength=0.9,
        description=None,
        source_conversation_id="c-2",
    )
    assert (stronger.strength, stronger.description) == (0.9, "second")
    await testrows.upsert_edge(
        pool,
        user,
        source_id="k-1",
        source_type="Concept",
        target_id="k-2",
        target_type="Concept",
        relationship_type="RELATED_TO",
        strength=0.5,
        description=None,
        source_conversation_id="c-2",
        edge_id="e-2",
    )
    await testrows.upsert_edge(
        pool,
        user,
        source_id="k-3",
        source_type="Concept",
        target_id="k-4",
        target_type="Concept",
        relationship_type="RELATED_TO",
        strength=0.5,
        description=None,
        source_conversation_id="c-2",
        edge_id="e-3",
    )
    assert [e.edge_id for e in await testrows.list_edges(pool, user)] == ["e-1", "e-2", "e-3"]
    assert [e.edge_id for e in await testrows.list_edges(pool, user, source_conversation_id="c-1")] == ["e-1"]
    assert await knowledge_edges.delete_edges_from_conversation(pool, user, "c-2") == 2
    assert await knowledge_edges.delete_edges_from_conversation(pool, user, "c-1") == 1
    assert await testrows.list_edges(pool, user) == []


async def test_an_existing_concept_merged_away_meanwhile_resolves_to_the_one_kept(
    pool: asyncpg.Pool, user: str
) -> None:
    """An answer names concept "a" by its handle, but an insight merged a -> b -> c while the LLM call ran: the new
    links go to c, the concept kept, and nothing is created."""
    for key, name in (("a", "Dani"), ("b", "Coach Dani"), ("c", "Coach Daniela")):
        await testrows.create_concept(
            pool, user, name=name, type="person", description=None, normalized_name=name.lower(), concept_id=key
        )
    await pool.execute(
        "UPDATE concepts SET status = 'merged', merged_into_concept_id = CASE concept_id WHEN 'a' THEN 'b' ELSE 'c' "
        "END WHERE concept_id IN ('a', 'b')"
    )
    wanted = concepts.NewConcept(
        name="Dani", type="person", description=None, normalized_name="dani", existing_concept_id="a"
    )
    [ensured] = await concepts.ensure_concepts(pool, user, [wanted])
    assert (ensured.concept_id, ensured.created) == ("c", False)


async def test_concept_metadata_of_the_wrong_shape_reads_and_heals(pool: asyncpg.Pool, user: str) -> None:
    await testrows.create_concept(
        pool, user, name="Lena", type="person", description=None, normalized_name="lena", concept_id="k-1"
    )
    await pool.execute("""UPDATE concepts SET metadata = '"lena"' WHERE concept_id = 'k-1'""")
    odd = await testrows.get_concept(pool, user, "k-1")
    assert odd is not None and (odd.metadata, odd.normalized_name, odd.aliases) == (None, None, [])
    await concepts.absorb(pool, user, "k-1", aliases=["my sister"], at=utc_now())
    healed = await testrows.get_concept(pool, user, "k-1")
    assert healed is not None and healed.metadata == {"aliases": ["my sister"]}


async def test_batched_cards_events_and_edges(pool: asyncpg.Pool, user: str) -> None:
    """The batch writers ingestion uses: cards stay one per entity across both APIs, racing batches included."""
    single, _ = await cards.ensure_card(
        pool, user, card_type="concept", source_entity_id="c-1", source_entity_type="Concept", display_data=None
    )
    batch = [
        cards.NewCard(
            card_type="concept",
            source_entity_id=f"c-{i}",
            source_entity_type="Concept",
            display_data={"title": f"#{i}"},
        )
        for i in range(1, 4)
    ]
    assert await cards.ensure_cards(pool, user, batch) == 2  # c-1 already had its card
    assert await cards.ensure_cards(pool, user, batch) == 0
    racing = await asyncio.gather(*(cards.ensure_cards(pool, user, [*batch, batch[0]]) for _ in range(3)))
    assert racing == [0, 0, 0]
    stored = {c.source_entity_id: c for c in await cards.list_cards(pool, user)}
    assert sorted(stored) == ["c-1", "c-2", "c-3"] and stored["c-1"].card_id == single.card_id
    assert stored["c-2"].display_data == {"title": "#2"} and stored["c-2"].updated_at == stored["c-2"].created_at
    fresh = [
        cards.NewCard(card_type="memory", source_entity_id=f"m-{i}", source_entity_type="MemoryUnit") for i in (1, 2, 1)
    ]
    assert await cards.insert_cards_for_new_entities(pool, user, fresh) == 2  # one per entity, even in one batch
    assert await cards.insert_cards_for_new_entities(pool, user, []) == 0
    assert sorted(c.source_entity_id for c in await cards.list_cards(pool, user))[3:] == ["m-1", "m-2"]

    await growth_events.insert_growth_events(
        pool,
        user,
        [
            growth_events.NewGrowthEvent(
                entity_id="c-2", entity_type="Concept", dim_key=d, delta=0.5, source="t", details={"rationale": "r"}
            )
            for d in ("know_self", "act_world")
        ],
    )
    assert await growth_events.growth_by_dimension(pool, user) == {"know_self": 0.5, "act_world": 0.5}

    edge = knowledge_edges.NewEdge(
        source_id="c-2",
        source_type="Concept",
        target_id="c-3",
        target_type="Concept",
        relationship_type="ENABLES",
        strength=0.4,
        description="a",
        source_conversation_id=None,
    )
    # one statement cannot change a row twice: repeats are merged as inserting them one by one would (the first
    # one's id, the stronger strength, the last description given)
    await knowledge_edges.upsert_edges(
        pool,
        user,
        [
            edge.model_copy(update={"edge_id": "e-first"}),
            edge.model_copy(update={"strength": 0.9, "description": None, "edge_id": "e-second"}),
            edge.model_copy(update={"strength": 0.2, "description": "c"}),
        ],
    )
    [stored_edge] = await testrows.list_edges(pool, user)
    assert (stored_edge.edge_id, stored_edge.strength, stored_edge.description, stored_edge.user_id) == (
        "e-first",
        0.9,
        "c",
        user,
    )
