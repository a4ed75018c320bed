"""The insight store on a real database: write_insight (merges move everything to the concept kept, communities
are reused, the write happens once per cycle, another user's ids change nothing) and what insight reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from core.cycle import Cycle
from core.ingestion import ForwardContext
from core.insight import (
    ArtifactDraft,
    CommunityDraft,
    ConversationDigest,
    InsightArtifactType,
    InsightGrowthDraft,
    InsightMaterial,
    InsightResult,
    InsightStatus,
    MergeDraft,
    insight_row_id,
    summary_artifact_id,
)
from core.vocabulary import EntityKind, GrowthDimension
from store.cycles import CycleState, read_cycle
from store.insight_material import (
    concept_names,
    insight_written,
    load_communities,
    load_concept_graph,
    load_concepts,
    load_insight_material,
)
from store.insight_writes import write_insight
from store.repos import (
    cards,
    communities,
    concepts,
    conversations,
    users,
)
from tests.store import testrows

WHEN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def concept(pool: asyncpg.Pool, user_id: str, name: str, kind: str = "activity") -> str:
    made = await testrows.create_concept(
        pool, user_id, name=name, type=kind, description=None, normalized_name=name.lower()
    )
    return made.concept_id


async def edge(
    pool: asyncpg.Pool, user_id: str, source: tuple[str, str], kind: str, target: tuple[str, str], strength: float
) -> None:
    await testrows.upsert_edge(
        pool,
        user_id,
        source_id=source[1],
        source_type=source[0],
        target_id=target[1],
        target_type=target[0],
        relationship_type=kind,
        strength=strength,
        description=None,
        source_conversation_id=None,
    )


async def a_user_with_a_duplicate(pool: asyncpg.Pool, user_id: str) -> dict[str, str]:
    """Running (kept), Jogging (its duplicate), Marathon, a memory unit, and rows pointing at Jogging everywhere."""
    await users.create_user(pool, user_id, email=f"{user_id}@example.org")
    conversation = await conversations.create_conversation(pool, user_id, start_time=WHEN, status="processed")
    unit = await testrows.insert_memory_unit(
        pool,
        user_id,
        title="Long run",
        content="Ran 14 km.",
        creation_ts=WHEN,
        importance_score=8,
        sentiment_score=0.5,
        source_conversation_id=conversation.id,
        ingestion_ts=WHEN,
    )
    ids = {
        "running": await concept(pool, user_id, "Running"),
        "jogging": await concept(pool, user_id, "Jogging"),
        "marathon": await concept(pool, user_id, "Marathon", "goal"),
        "unit": unit.muid,
        "conversation": conversation.id,
    }
    c, m = "Concept", "MemoryUnit"
    await edge(pool, user_id, (c, ids["jogging"]), "RELATED_TO", (c, ids["marathon"]), 0.4)
    await edge(pool, user_id, (c, ids["running"]), "RELATED_TO", (c, ids["marathon"]), 0.7)
    await edge(pool, user_id, (m, ids["unit"]), "IS_ABOUT", (c, ids["jogging"]), 0.9)
    await edge(pool, user_id, (m, ids["unit"]), "IS_ABOUT", (c, ids["running"]), 0.5)
    await edge(pool, user_id, (c, ids["running"]), "IS_SIMILAR_TO", (c, ids["jogging"]), 0.8)
    card, _ = await cards.ensure_card(
        pool,
        user_id,
        card_type="concept",
        source_entity_id=ids["jogging"],
        source_entity_type="Concept",
        display_data={"title": "Jogging"},
    )
    await pool.execute("UPDATE cards SET is_favorited = true WHERE card_id = $1", card.card_id)
    await testrows.insert_growth_event(
        pool,
        user_id,
        entity_id=ids["jogging"],
        entity_type="Concept",
        dim_key="act_self",
        delta=0.3,
        source="ingestion",
        details=None,
    )
    old = await testrows.create_derived_artifact(
        pool,
        user_id,
        artifact_type="pattern",
        title="Earlier",
        source_concept_id=ids["jogging"],
        content_data={"source_concept_ids": [ids["jogging"], ids["marathon"]]},
    )
    community = await testrows.create_community(
        pool, user_id, name="Sport", core_concept_ids=[ids["jogging"], ids["marathon"]]
    )
    await pool.execute(
        "UPDATE concepts SET community_id = $2 WHERE user_id = $1 AND concept_id = ANY($3::text[])",
        user_id,
        community.community_id,
        [ids["jogging"], ids["marathon"]],
    )
    ids["old_artifact"], ids["community"] = old.artifact_id, community.community_id
    return ids


def result_for(user_id: str, cycle_start: datetime, ids: dict[str, str], **changes: Any) -> InsightResult:
    base: dict[str, Any] = {
        "user_id": user_id,
        "cycle_start": cycle_start,
        "status": InsightStatus.WRITTEN,
        "memory_profile": {"summary": "A runner."},
        "knowledge_graph_schema": {"concept_types": []},
        "artifacts": [
            ArtifactDraft(
                key="insight_summary",
                artifact_type=InsightArtifactType.INSIGHT_SUMMARY,
                title="Your week",
                narrative="You ran.",
                memory_unit_ids=(ids["unit"], "gone-unit"),
                concept_ids=(ids["running"],),
            )
        ],
        "merges": [MergeDraft(primary_id=ids["running"], secondary_ids=(ids["jogging"],), reason="same")],
        "growth_events": [
            InsightGrowthDraft(
                key="growth:1",
                entity_id=ids["running"],
                entity_kind=EntityKind.CONCEPT,
                dim_key=GrowthDimension.ACT_SELF,
                delta=0.5,
                rationale="Kept running.",
            )
        ],
        "communities": [
            CommunityDraft(
                key="community:1",
                existing_id=ids["community"],
                concept_ids=(ids["running"], ids["marathon"]),
                name="Running",
                description="Training.",
            )
        ],
        "detection_method": "louvain(test)",
        "next_context": ForwardContext(proactive_greeting="Hi!", unresolved_topics=[], suggested_focus=None),
        "latest_conversation": ConversationDigest(
            conversation_id=ids["conversation"], title=None, summary=None, importance=8, start_time=WHEN
        ),
        "model": "test-model",
        "prompt_name": "insight",
        "prompt_version": "v",
    }
    return InsightResult(**{**base, **changes})


async def snapshot(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    tables = ("concepts", "cards", "growth_events", "derived_artifacts", "communities", "users")
    rows = {
        t: [dict(r) for r in await pool.fetch(f"SELECT * FROM {t} WHERE user_id = $1 ORDER BY 1", user_id)]
        for t in tables
    }
    rows["edges"] = [
        dict(r)
        for r in await pool.fetch(
            "SELECT source_id, relationship_type, target_id, strength FROM runtime.knowledge_edges WHERE user_id = $1 "
            "ORDER BY 1, 2, 3",
            user_id,
        )
    ]
    return rows


async def test_a_merge_moves_relationships_cards_growth_and_sources_to_the_concept_kept(pool: asyncpg.Pool) -> None:
    user_id = "user-a"
    ids = await a_user_with_a_duplicate(pool, user_id)
    user = await users.get_user(pool, user_id)
    assert user is not None
    summary = await write_insight(pool, result_for(user_id, user.created_at, ids))

    assert summary.outcome == "written" and summary.concepts_merged == 1 and summary.relationships_moved == 3
    running = await testrows.get_concept(pool, user_id, ids["running"])
    jogging = await testrows.get_concept(pool, user_id, ids["jogging"])
    assert running is not None and jogging is not None
    assert (jogging.status, jogging.merged_into_concept_id, jogging.community_id) == ("merged", ids["running"], None)
    assert running.aliases == ["jogging"]
    kept = {
        (e.source_id, e.relationship_type, e.target_id): e.strength for e in await testrows.list_edges(pool, user_id)
    }
    assert kept == {
        (ids["running"], "RELATED_TO", ids["marathon"]): 0.7,  # two became one: the stronger stays
        (ids["unit"], "IS_ABOUT", ids["running"]): 0.9,
        # Running IS_SIMILAR_TO Jogging would link Running to itself: gone
    }
    (card,) = [c for c in await cards.list_cards(pool, user_id) if c.source_entity_type == "Concept"]
    assert (card.source_entity_id, card.is_favorited) == (ids["running"], True)
    assert card.display_data is not None and card.display_data["title"] == "Running"
    assert {g.entity_id for g in await testrows.list_growth_events(pool, user_id)} == {ids["running"]}
    old = await testrows.get_derived_artifact(pool, user_id, ids["old_artifact"])
    assert old is not None and old.source_concept_id == ids["running"] and old.content_data is not None
    assert sorted(old.content_data["source_concept_ids"]) == sorted([ids["running"], ids["marathon"]])

    new = await testrows.get_derived_artifact(pool, user_id, summary_artifact_id(Cycle.of(user_id, user.created_at)))
    assert new is not None and new.generated_by_agent == "InsightAgent"
    assert new.content_data is not None and new.content_data["source_memory_unit_ids"] == [ids["unit"]]  # gone: out
    (community,) = await communities.list_communities(pool, user_id)
    assert (community.community_id, community.name) == (ids["community"], "Running")  # reused, not replaced
    assert community.core_concept_ids == sorted([ids["running"], ids["marathon"]])
    grouped = {c.concept_id: c.community_id for c in await concepts.list_concepts(pool, user_id, status=None)}
    assert grouped == {ids["running"]: ids["community"], ids["marathon"]: ids["community"], ids["jogging"]: None}
    after = await users.get_user(pool, user_id)
    assert after is not None and after.memory_profile == {"summary": "A runner."}
    package = after.next_conversation_context_package
    assert package is not None and package["source_conversation_id"] == ids["conversation"]

    outboxed = {
        (r["label"], r["entity_id"])
        for r in await pool.fetch(
            "SELECT label, entity_id FROM runtime.outbox WHERE store = 'graph' AND user_id = $1", user_id
        )
    }
    assert {
        ("User", user_id),
        ("Concept", ids["running"]),
        ("Concept", ids["jogging"]),
        ("Concept", ids["marathon"]),  # at the other end of a moved relationship
        ("MemoryUnit", ids["unit"]),
        ("DerivedArtifact", ids["old_artifact"]),
        ("DerivedArtifact", new.artifact_id),
        ("Community", ids["community"]),
    } <= outboxed

    # the same insight again (a rerun, a racing duplicate): nothing changes
    before = await snapshot(pool, user_id)
    again = await write_insight(pool, result_for(user_id, user.created_at, ids))
    assert again.outcome == "already_written"
    assert await snapshot(pool, user_id) == before


async def test_communities_are_reused_created_and_removed(pool: asyncpg.Pool) -> None:
    user_id = "user-a"
    ids = await a_user_with_a_duplicate(pool, user_id)
    lena, dad = await concept(pool, user_id, "Lena", "person"), await concept(pool, user_id, "Dad", "person")
    user = await users.get_user(pool, user_id)
    assert user is not None
    result = result_for(
        user_id,
        user.created_at,
        ids,
        merges=[],
        communities=[
            CommunityDraft(
                key="community:1", existing_id=None, concept_ids=(lena, dad), name="Family", description=None
            ),
            CommunityDraft(  # Lena is taken, and one that is not a concept: nothing left, no community
                key="community:2", existing_id=None, concept_ids=(lena, "not-a-concept"), name="x", description=None
            ),
        ],
    )
    summary = await write_insight(pool, result)

    assert summary.communities == {"created": 1, "reused": 0, "removed": 1, "concepts_regrouped": 4}
    (family,) = await communities.list_communities(pool, user_id)
    assert family.community_id == insight_row_id(Cycle.of(user_id, user.created_at), "community:1")
    assert (family.name, family.detection_method, family.core_concept_ids) == (
        "Family",
        "louvain(test)",
        sorted([lena, dad]),
    )
    grouped = {c.concept_id: c.community_id for c in await concepts.list_concepts(pool, user_id)}
    assert grouped == {
        ids["running"]: None,
        ids["jogging"]: None,
        ids["marathon"]: None,
        lena: family.community_id,
        dad: family.community_id,
    }


async def test_a_closed_cycle_or_another_users_ids_change_nothing(pool: asyncpg.Pool) -> None:
    ids = await a_user_with_a_duplicate(pool, "user-a")
    await users.create_user(pool, "user-b", email="b@example.org")
    user_b = await users.get_user(pool, "user-b")
    assert user_b is not None
    a_before = await snapshot(pool, "user-a")

    # user B's insight naming user A's rows (a merge, sources, growth, community members): none of A's rows move
    summary = await write_insight(pool, result_for("user-b", user_b.created_at, ids, latest_conversation=None))
    assert summary.outcome == "written" and summary.concepts_merged == 0 and summary.growth_events == 0
    assert await snapshot(pool, "user-a") == a_before
    assert await communities.list_communities(pool, "user-b") == []

    # user A's cycle closed meanwhile (the report reset it): the insight of the old cycle writes nothing
    user_a = await users.get_user(pool, "user-a")
    assert user_a is not None
    await users.start_cycle(pool, "user-a", user_a.created_at + timedelta(days=7))
    closed = await write_insight(pool, result_for("user-a", user_a.created_at, ids))
    assert closed.outcome == "not_current_cycle"
    after = await snapshot(pool, "user-a")
    assert after["concepts"] == a_before["concepts"] and after["derived_artifacts"] == a_before["derived_artifacts"]


def test_row_ids_are_the_same_for_the_same_cycle() -> None:
    user_id = str(uuid.uuid4())
    cycle = Cycle.of(user_id, WHEN)
    assert insight_row_id(cycle, "growth:1") == insight_row_id(
        Cycle.of(user_id, WHEN.replace(microsecond=5)), "growth:1"
    )
    assert insight_row_id(cycle, "growth:1") != insight_row_id(cycle, "growth:2")


async def test_the_material_is_the_window_of_this_user_only(pool: asyncpg.Pool) -> None:
    """What insight reads: memory units from the window start on (not before), their conversations and concepts;
    and for another user, none of this user's rows through any of the reads."""
    ids = await a_user_with_a_duplicate(pool, "user-a")
    await users.create_user(pool, "user-b", email="b@example.org")
    conversation = await conversations.get_conversation(pool, "user-a", ids["conversation"])
    assert conversation is not None
    old = await testrows.insert_memory_unit(
        pool,
        "user-a",
        title="Years ago",
        content="Before the window.",
        creation_ts=WHEN - timedelta(days=30),
        importance_score=9,
        sentiment_score=0,
        source_conversation_id=ids["conversation"],
        ingestion_ts=WHEN - timedelta(days=30),  # learned before the window: not this cycle's material
    )
    cycles = {user_id: await read_cycle(pool, user_id) for user_id in ("user-a", "user-b")}

    async def material_of(cycle: CycleState) -> InsightMaterial:
        start, end = WHEN - timedelta(days=1), WHEN + timedelta(days=1)
        return await load_insight_material(
            pool, cycle.cycle, window_start=start, window_end=end, importance_threshold=3
        )

    cycle_a = cycles["user-a"]
    assert cycle_a is not None
    material = await material_of(cycle_a)
    assert [m.muid for m in material.memory_units] == [ids["unit"]] and old.muid != ids["unit"]
    assert material.active_conversations == 1 and material.conversations == ()  # processed, but no importance
    assert [(c.name, c.mentions) for c in material.concepts] == [("Jogging", 1), ("Running", 1)]
    assert {(link.a, link.b) for link in await load_concept_graph(pool, "user-a")} == {
        tuple(sorted((ids["running"], ids["jogging"]))),
        tuple(sorted((ids["running"], ids["marathon"]))),
        tuple(sorted((ids["jogging"], ids["marathon"]))),
    }

    cycle_b = cycles["user-b"]
    assert cycle_b is not None
    empty = await material_of(cycle_b)
    assert (empty.memory_units, empty.concepts, empty.active_conversations) == ((), (), 0)
    assert await load_concept_graph(pool, "user-b") == []
    assert await concept_names(pool, "user-b", [ids["running"]]) == {}
    assert await load_concepts(pool, "user-b", [ids["running"]]) == []
    assert await load_communities(pool, "user-b") == []
    assert not await insight_written(pool, cycle_b.cycle)
