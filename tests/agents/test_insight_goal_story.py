"""The goal achievement story (seed V9.1): the answer's checks (one goal concept, an arc of at least two memory units,
one story per goal), the repair round that sees them, its resolution to ids, and what the model is shown of goals."""

from __future__ import annotations

from typing import Any

import pytest

from agents.insight import InsightAgent, InsightInput, InsightOutput, Shown, build_view, check_references
from agents.llm import LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.cycle import Cycle
from core.errors import PermanentError
from core.insight import ArtifactDraft, InsightArtifactType, goal_story_id, summary_artifact_id
from core.language import Language
from core.vocabulary import ArtifactType, is_goal_type
from prompts import load_prompt
from tests.agents.test_insight import START, concept, insight_answer, material, memory

GOAL_MATERIAL = material(
    memory_units=(memory(1, 8), memory(2, 6), memory(3, 5)),
    concepts=(concept(1, "Running"), concept(2, "Half marathon", "goal"), concept(3, "Lena", "person")),
)
"""m1..m3; c2 is the one goal."""
SHOWN = Shown(memory_units=3, concepts=3, communities=0, goals=frozenset({2}))


def story(*sources: str, title: str = "How you got there") -> dict[str, Any]:
    return {
        "artifact_type": "goal_achievement_story",
        "title": title,
        "narrative": "You did it.",
        "sources": [*sources],
    }


def with_story(*stories: dict[str, Any]) -> dict[str, Any]:
    summary = {"artifact_type": "insight_summary", "title": "A week", "narrative": "You ran.", "sources": ["m1"]}
    return insight_answer(artifacts=[summary, *stories], concept_merges=[], growth_events=[])


@pytest.mark.parametrize(
    ("stories", "problem"),
    [
        (
            [story("m1", "m2")],
            "artifacts[1].sources: a goal_achievement_story must name exactly one concept of type goal that the user "
            "reached (you named none)",
        ),
        (
            [story("c1", "m1", "m2")],  # a concept, but not a goal
            "must name exactly one concept of type goal that the user reached (you named none)",
        ),
        (
            [story("c2", "m1")],
            "artifacts[1].sources: a goal_achievement_story must cite at least two memory units, from the goal's first "
            "memory to its achievement (1)",
        ),
        (
            [story("c2", "m1", "m1")],  # the same memory twice is no arc
            "cite at least two memory units, from the goal's first memory to its achievement (1)",
        ),
        (
            [story("c1", "c3")],  # both wrong: one message says both
            "must name exactly one concept of type goal that the user reached (you named none) and cite at least two "
            "memory units",
        ),
        ([story("c2", "m1", "m2"), story("c2", "m2", "m3")], "artifacts[2].sources: c2 already has its story in "),
    ],
)
def test_a_story_without_its_goal_or_its_arc_is_one_problem(stories: list[dict[str, Any]], problem: str) -> None:
    output = InsightOutput.model_validate(with_story(*stories))
    problems = check_references(output, SHOWN)
    assert len(problems) == 1 and problem in problems[0], problems


def test_two_goals_in_one_story_are_refused_and_a_goal_with_an_arc_passes() -> None:
    two_goals = Shown(memory_units=3, concepts=3, communities=0, goals=frozenset({2, 3}))
    output = InsightOutput.model_validate(with_story(story("c2", "c3", "m1", "m2")))
    assert check_references(output, two_goals) == [
        "artifacts[1].sources: a goal_achievement_story must name exactly one concept of type goal that the user "
        "reached (you named c2, c3)"
    ]
    # one goal, two memory units and another concept (a person who helped) is a story
    fine = InsightOutput.model_validate(with_story(story("m1", "c2", "c1", "m3")))
    assert check_references(fine, SHOWN) == []


def test_the_goal_type_is_read_the_way_concept_types_compare() -> None:
    assert is_goal_type("goal") and is_goal_type(" Goal ") and not is_goal_type("goals") and not is_goal_type("value")


async def test_a_story_is_resolved_to_its_goal_and_memories_after_one_repair(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    agent = InsightAgent(client, model="test-model", input_token_budget=4000)
    server.enqueue(
        ScriptedReply.json(with_story(story("c1", "m1", "m3"))),  # Running is no goal: sent back once
        ScriptedReply.json(with_story(story("m1", "c3", "c2", "m3"))),
    )
    result = await agent.run(InsightInput(GOAL_MATERIAL))

    assert result.llm_calls == 2
    repair = server.chat_requests[1].messages[-1]["content"]
    assert "artifacts[1].sources: a goal_achievement_story must name exactly one concept of type goal" in repair
    _, told = result.artifacts
    assert told.artifact_type is InsightArtifactType.GOAL_STORY
    assert told.goal_concept_id == "db-c-2" and told.concept_ids == ("db-c-2", "db-c-3")  # the goal first
    assert told.memory_unit_ids == ("db-mu-1", "db-mu-3")
    cycle = Cycle.of("user-1", START)
    assert told.artifact_id(cycle) == goal_story_id("user-1", "db-c-2")  # the goal's, not the cycle's
    assert told.artifact_id(Cycle.of("user-1", START.replace(day=20))) == told.artifact_id(cycle)
    assert InsightArtifactType.GOAL_STORY.stored_type is ArtifactType.GOAL_ACHIEVEMENT_STORY


async def test_a_story_still_wrong_after_repair_is_permanent(server: ScriptedLLMServer, client: LLMClient) -> None:
    agent = InsightAgent(client, model="test-model", input_token_budget=4000)
    bad = with_story(story("c2", "m1"))
    server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(bad))
    with pytest.raises(PermanentError, match="cite at least two memory units"):
        await agent.run(InsightInput(GOAL_MATERIAL))


def test_the_model_sees_which_goals_have_their_story_and_in_what_language() -> None:
    told = concept(2, "Half marathon", "goal").model_copy(update={"story_told": True})
    data = InsightInput(
        material(concepts=(concept(1, "Running"), told, concept(4, "Freelance", "goal"))),
        language=Language("pt-PT", "Portuguese (Portugal)"),
    )
    view = build_view(data, 4000)
    assert view.shown.goals == frozenset({2, 3})  # told or not, both are goals; the marker tells them apart
    rendered = load_prompt("insight").render(**view.variables)
    assert "c2. Half marathon (goal) (story told) [" in rendered.user and "c3. Freelance (goal) [" in rendered.user
    assert "<language>\nPortuguese (Portugal) [pt-PT]" in rendered.user  # the story is in the user's language
    assert "goal_achievement_story" in (rendered.system or "")


def test_other_artifacts_keep_their_cycle_ids() -> None:
    cycle = Cycle.of("user-1", START)
    summary = ArtifactDraft(
        key="insight_summary",
        artifact_type=InsightArtifactType.INSIGHT_SUMMARY,
        title="t",
        narrative="n",
        memory_unit_ids=(),
        concept_ids=(),
    )
    assert summary.artifact_id(cycle) == summary_artifact_id(cycle)
    pattern = summary.model_copy(update={"key": "artifact:1", "artifact_type": InsightArtifactType.PATTERN})
    assert pattern.artifact_id(cycle) not in (summary_artifact_id(cycle), goal_story_id("user-1", "artifact:1"))
