"""The goal achievement story on a real database: written once per goal for ever (a rerun, a later cycle, a goal
merged into one with a story write no second), its card in the contract's shape, the goal's first memories read for
the story, and which goals the model is told have theirs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from clients.contract import ArtifactCardDisplay
from core.insight import (
    ArtifactDraft,
    InsightArtifactType,
    InsightResult,
    InsightStatus,
    MergeDraft,
    goal_story_id,
)
from store.insight_material import load_concepts, load_goal_beginnings
from store.insight_writes import write_insight
from store.repos import cards, derived_artifacts, users
from tests.store import testrows

WHEN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STORY = InsightArtifactType.GOAL_STORY


async def a_user_with_a_goal(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    """A goal (Half marathon), another goal (First race, a duplicate of it) and four memory units told over months,
    related to the goal by extracted relationships, and one by a structural one only (not the goal's story)."""
    await users.create_user(pool, user_id, email=f"{user_id}@example.org")
    ids: dict[str, Any] = {}
    for key, name in (("goal", "Half marathon"), ("twin", "First race")):
        made = await testrows.create_concept(
            pool, user_id, name=name, type="goal", description=None, normalized_name=name.lower()
        )
        ids[key] = made.concept_id
    units = []
    for n, (title, days) in enumerate((("Signed up", 120), ("First 5k", 90), ("Ran 10k", 30), ("Finished", 0))):
        unit = await testrows.insert_memory_unit(
            pool,
            user_id,
            title=title,
            content=f"{title}.",
            creation_ts=WHEN - timedelta(days=days),
            importance_score=5 + n,
            sentiment_score=0.5,
            source_conversation_id=None,
            ingestion_ts=WHEN,
        )
        units.append(unit.muid)
    ids["units"] = units
    stray = await testrows.insert_memory_unit(
        pool,
        user_id,
        title="Mentioned only",
        content="A structural link.",
        creation_ts=WHEN - timedelta(days=400),
        importance_score=5,
        sentiment_score=0.0,
        source_conversation_id=None,
        ingestion_ts=WHEN,
    )
    ids["stray"] = stray.muid
    links = [(units[0], "RELATED_TO"), (units[1], "IS_MILESTONE_FOR"), (units[3], "IS_MILESTONE_FOR")]
    for muid, kind in links:
        await edge(pool, user_id, ("MemoryUnit", muid), kind, ("Concept", ids["goal"]))
    await edge(pool, user_id, ("Concept", ids["goal"]), "INSPIRES", ("MemoryUnit", units[2]))  # either direction
    await edge(pool, user_id, ("MemoryUnit", stray.muid), "MENTIONS", ("Concept", ids["goal"]))
    return ids


async def edge(pool: asyncpg.Pool, user_id: str, source: tuple[str, str], kind: str, target: tuple[str, str]) -> None:
    await testrows.upsert_edge(
        pool,
        user_id,
        source_id=source[1],
        source_type=source[0],
        target_id=target[1],
        target_type=target[0],
        relationship_type=kind,
        strength=0.8,
        description=None,
        source_conversation_id=None,
    )


def story(goal: str, units: tuple[str, ...], title: str, key: str = "artifact:1") -> ArtifactDraft:
    return ArtifactDraft(
        key=key,
        artifact_type=STORY,
        title=title,
        narrative=f"{title}: how you got there.",
        memory_unit_ids=units,
        concept_ids=(goal,),
        goal_concept_id=goal,
    )


def result(user_id: str, cycle_start: datetime, *artifacts: ArtifactDraft, **changes: Any) -> InsightResult:
    summary = ArtifactDraft(
        key="insight_summary",
        artifact_type=InsightArtifactType.INSIGHT_SUMMARY,
        title="Your week",
        narrative="You ran.",
        memory_unit_ids=(),
        concept_ids=(),
    )
    return InsightResult(
        user_id=user_id,
        cycle_start=cycle_start,
        status=InsightStatus.WRITTEN,
        artifacts=[summary, *artifacts],
        model="test-model",
        prompt_name="insight",
        prompt_version="v",
        **changes,
    )


async def stories(pool: asyncpg.Pool, user_id: str) -> list[tuple[str, str, str | None]]:
    found = await derived_artifacts.list_derived_artifacts(pool, user_id, artifact_type="goal_achievement_story")
    return [(a.artifact_id, a.title, a.source_concept_id) for a in found]


async def next_cycle(pool: asyncpg.Pool, user_id: str, days: int) -> datetime:
    user = await users.get_user(pool, user_id)
    assert user is not None
    start = user.created_at + timedelta(days=days)
    await users.start_cycle(pool, user_id, start)
    return start


async def test_a_goal_gets_one_story_for_ever(pool: asyncpg.Pool) -> None:
    user_id = "user-a"
    ids = await a_user_with_a_goal(pool, user_id)
    goal, units = ids["goal"], ids["units"]
    user = await users.get_user(pool, user_id)
    assert user is not None
    first = result(user_id, user.created_at, story(goal, (units[0], units[3]), "From sign-up to finish"))

    written = await write_insight(pool, first)
    assert (written.outcome, written.artifacts, written.cards) == ("written", 2, 2)
    story_id = goal_story_id(user_id, goal)
    assert await stories(pool, user_id) == [(story_id, "From sign-up to finish", goal)]
    row = await testrows.get_derived_artifact(pool, user_id, story_id)
    assert row is not None and row.generated_by_agent == "InsightAgent" and row.source_memory_unit_id == units[0]
    data = row.content_data or {}
    assert data["insight_kind"] == "goal_achievement_story" and data["goal_concept_id"] == goal
    assert data["source_memory_unit_ids"] == [units[0], units[3]]
    [card] = [c for c in await cards.list_cards(pool, user_id) if c.source_entity_id == story_id]
    assert (card.card_type, card.source_entity_type) == ("goal_achievement_story", "DerivedArtifact")
    shape = ArtifactCardDisplay.model_validate(card.display_data)  # the contract's shape, like the other insights
    assert shape.title == "From sign-up to finish" and shape.insight_kind is STORY
    [told] = await load_concepts(pool, user_id, [goal])
    assert told.story_told  # the next cycle's model is told

    assert (await write_insight(pool, first)).outcome == "already_written"  # a rerun of the cycle

    # a later cycle tells the same goal again: its summary is written, the story is not, and no card comes with it
    later = await next_cycle(pool, user_id, 7)
    again = await write_insight(pool, result(user_id, later, story(goal, (units[1], units[3]), "Told twice")))
    assert (again.outcome, again.artifacts, again.cards) == ("written", 1, 1)
    assert await stories(pool, user_id) == [(story_id, "From sign-up to finish", goal)]
    assert len([c for c in await cards.list_cards(pool, user_id) if c.card_type == "goal_achievement_story"]) == 1


async def test_a_story_follows_its_goal_into_a_merge(pool: asyncpg.Pool) -> None:
    """First race (with its story) is merged into Half marathon in the same cycle that tells Half marathon's story:
    the story moved to the goal kept, so the goal has its story and the new one is not written."""
    user_id = "user-m"
    ids = await a_user_with_a_goal(pool, user_id)
    goal, twin, units = ids["goal"], ids["twin"], ids["units"]
    user = await users.get_user(pool, user_id)
    assert user is not None
    await write_insight(pool, result(user_id, user.created_at, story(twin, (units[0], units[1]), "The first race")))
    later = await next_cycle(pool, user_id, 7)
    merge = MergeDraft(primary_id=goal, secondary_ids=(twin,), reason="the same race")
    written = await write_insight(
        pool, result(user_id, later, story(goal, (units[2], units[3]), "The half marathon"), merges=[merge])
    )
    assert (written.outcome, written.concepts_merged, written.artifacts) == ("written", 1, 1)
    assert await stories(pool, user_id) == [(goal_story_id(user_id, twin), "The first race", goal)]


async def test_two_stories_of_one_goal_in_one_answer_write_the_first(pool: asyncpg.Pool) -> None:
    """The check refuses two stories naming one goal; two naming goals that a merge of the same answer made one
    reach the write: they share the goal's id, and the one insert keeps the first."""
    ids = await a_user_with_a_goal(pool, "user-a")
    user = await users.get_user(pool, "user-a")
    assert user is not None
    goal, units = ids["goal"], tuple(ids["units"])
    twice = result(
        "user-a", user.created_at, story(goal, units[:2], "First"), story(goal, units[2:], "Second", key="artifact:2")
    )
    written = await write_insight(pool, twice)
    assert (written.artifacts, written.cards) == (2, 2)
    assert await stories(pool, "user-a") == [(goal_story_id("user-a", goal), "First", goal)]


async def test_two_stories_of_goals_of_two_users_do_not_meet(pool: asyncpg.Pool) -> None:
    a, b = await a_user_with_a_goal(pool, "user-a"), await a_user_with_a_goal(pool, "user-b")
    user_a, user_b = await users.get_user(pool, "user-a"), await users.get_user(pool, "user-b")
    assert user_a is not None and user_b is not None
    await write_insight(pool, result("user-a", user_a.created_at, story(a["goal"], tuple(a["units"][:2]), "A's")))
    # B's story naming A's goal is not written (it is no goal of B's), and A's is untouched
    written = await write_insight(
        pool, result("user-b", user_b.created_at, story(a["goal"], tuple(a["units"][:2]), "B's"))
    )
    assert (written.outcome, written.artifacts) == ("written", 1)
    assert await stories(pool, "user-a") == [(goal_story_id("user-a", a["goal"]), "A's", a["goal"])]
    assert await stories(pool, "user-b") == []
    assert not (await load_concepts(pool, "user-b", [b["goal"]]))[0].story_told
    assert (await load_concepts(pool, "user-a", [a["goal"]]))[0].story_told


async def test_the_goal_s_first_memories_are_read_oldest_first(pool: asyncpg.Pool) -> None:
    ids = await a_user_with_a_goal(pool, "user-a")
    other = await a_user_with_a_goal(pool, "user-b")
    goal, twin, units = ids["goal"], ids["twin"], ids["units"]

    found = await load_goal_beginnings(pool, "user-a", [goal, twin], cycle_units=(), goals=2, per_goal=2)
    # extracted relationships in either direction, oldest first; the structural MENTIONS is no part of the story
    assert [(g, m.muid) for g, m in found] == [(goal, units[0]), (goal, units[1])]
    assert found[0][1].title == "Signed up" and found[0][1].creation_ts == WHEN - timedelta(days=120)
    cycle = {units[3]}  # the cycle learned "Finished": shown already, and a milestone of the goal
    shown = await load_goal_beginnings(pool, "user-a", [goal], cycle_units=cycle, goals=1, per_goal=5)
    assert [m.muid for _, m in shown] == units[:3]
    assert await load_goal_beginnings(pool, "user-a", [other["goal"]], cycle_units=(), goals=1, per_goal=2) == []


async def test_the_goals_a_cycle_marks_a_milestone_of_come_first(pool: asyncpg.Pool) -> None:
    """More goals than are traced: the one a cycle unit IS_MILESTONE_FOR is traced, even when given last."""
    ids = await a_user_with_a_goal(pool, "user-a")
    goal, twin, units = ids["goal"], ids["twin"], ids["units"]
    await edge(pool, "user-a", ("MemoryUnit", units[2]), "RELATED_TO", ("Concept", twin))
    assert [
        g for g, _ in await load_goal_beginnings(pool, "user-a", [twin, goal], cycle_units=(), goals=1, per_goal=1)
    ] == [twin]  # no milestone in the cycle: the order given
    traced = await load_goal_beginnings(pool, "user-a", [twin, goal], cycle_units={units[3]}, goals=1, per_goal=1)
    assert [(g, m.muid) for g, m in traced] == [(goal, units[0])]
