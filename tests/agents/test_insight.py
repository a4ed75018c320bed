"""InsightAgent through the scripted server (handles resolved, merges remapped, bad references repaired once, the
token budget kept), and community detection on graphs whose answer is known."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.insight import (
    DETECTION_METHOD,
    InsightAgent,
    InsightInput,
    InsightLimits,
    InsightOutput,
    Shown,
    build_view,
    check_limits,
    check_references,
    community_candidates,
    detect_communities,
    jaccard,
    match_existing,
    neighbour_counts,
    strongest_neighbours,
)
from agents.llm import LLMClient, estimate_tokens, strict_json_schema
from agents.scripted_handles import REFERENCE
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from core.errors import PermanentError
from core.insight import (
    CommunityCandidate,
    ConceptDigest,
    ConceptLink,
    ConversationDigest,
    ExistingCommunity,
    InsightArtifactType,
    InsightMaterial,
    InsightStatus,
    MemoryDigest,
)
from core.vocabulary import EntityKind, GrowthDimension
from prompts import load_prompt
from tests.agents.test_llm import assert_strict_mode_compatible

START = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)


def memory(i: int, importance: float = 6, content: str | None = None) -> MemoryDigest:
    return MemoryDigest(
        muid=f"db-mu-{i}",
        title=f"Memory {i}",
        content=content or f"Something that happened, number {i}.",
        importance=importance,
        sentiment=0.2,
        creation_ts=START + timedelta(hours=i),
        source_conversation_id="db-conv-1",
    )


def concept(i: int, name: str, kind: str = "activity") -> ConceptDigest:
    return ConceptDigest(concept_id=f"db-c-{i}", name=name, type=kind, description=None, salience=None, mentions=1)


def material(**changes: Any) -> InsightMaterial:
    base: dict[str, Any] = {
        "user_id": "user-1",
        "cycle_start": START,
        "window_start": START,
        "window_end": START + timedelta(days=7),
        "active_conversations": 2,
        "conversations": (
            ConversationDigest(
                conversation_id="db-conv-1",
                title="Long run",
                summary="She ran 10k.",
                importance=8,
                start_time=START,
            ),
        ),
        "memory_units": (memory(1, 8), memory(2, 6)),
        "concepts": (concept(1, "Running"), concept(2, "Morning runs"), concept(3, "Lena", "person")),
        "memory_profile": {"summary": "A designer who runs."},
    }
    return InsightMaterial(**{**base, **changes})


def insight_answer(**overrides: Any) -> dict[str, Any]:
    """A valid answer for `material()` (2 memory units, 3 concepts, no community), changed by `overrides`."""
    base: dict[str, Any] = {
        "memory_profile": {
            "summary": "A designer who runs and is getting steadier.",
            "traits": ["patient"],
            "values": ["health"],
            "goals": ["half marathon"],
            "interests": ["running"],
            "key_people": ["Lena (sister)"],
            "current_focus": "training",
            "communication_style": None,
        },
        "knowledge_graph_schema": {
            "concept_types": [{"type": "activity", "description": "What she does"}],
            "relationship_patterns": [
                {
                    "source_type": "activity",
                    "relationship_type": "CONTRIBUTES_TO",
                    "target_type": "goal",
                    "description": "Training feeds goals",
                }
            ],
        },
        "artifacts": [
            {"artifact_type": "insight_summary", "title": "A steady week", "narrative": "You ran.", "sources": ["m1"]},
            {"artifact_type": "pattern", "title": "Mornings", "narrative": "Mornings work.", "sources": ["m2", "c2"]},
        ],
        "concept_merges": [{"primary": "c1", "duplicates": ["c2"], "reason": "the same running"}],
        "growth_events": [
            {"about": "c2", "dim_key": "act_self", "delta": 0.4, "rationale": "She kept at it."},
            {"about": "m1", "dim_key": "know_self", "delta": 0.2, "rationale": "She noticed why."},
        ],
        "communities": [],
        "next_conversation": {
            "proactive_greeting": "How did the long run feel?",
            "unresolved_topics": [{"topic": "shins", "suggested_question": "How are the shins?"}],
            "suggested_focus": "recovery",
        },
    }
    return {**base, **overrides}


@pytest.fixture
def agent(client: LLMClient) -> InsightAgent:
    return InsightAgent(client, model="test-model", input_token_budget=4000)


async def test_one_call_resolves_handles_and_remaps_merged_concepts(
    server: ScriptedLLMServer, agent: InsightAgent
) -> None:
    server.enqueue(ScriptedReply.json(insight_answer()))
    result = await agent.run(InsightInput(material(), detection_method=DETECTION_METHOD), job_id="insight:user-1")

    assert result.status is InsightStatus.WRITTEN and result.llm_calls == 1
    assert result.prompt_name == "insight" and result.prompt_version == load_prompt("insight").version
    assert [(m.primary_id, m.secondary_ids) for m in result.merges] == [("db-c-1", ("db-c-2",))]
    summary, pattern = result.artifacts
    assert (summary.key, summary.artifact_type, summary.memory_unit_ids) == (
        "insight_summary",
        InsightArtifactType.INSIGHT_SUMMARY,
        ("db-mu-1",),
    )
    # the pattern named the duplicate c2: it rests on the concept kept
    assert (pattern.key, pattern.memory_unit_ids, pattern.concept_ids) == ("artifact:1", ("db-mu-2",), ("db-c-1",))
    assert [(g.key, g.entity_id, g.entity_kind, g.dim_key) for g in result.growth_events] == [
        ("growth:1", "db-c-1", EntityKind.CONCEPT, GrowthDimension.ACT_SELF),
        ("growth:2", "db-mu-1", EntityKind.MEMORY_UNIT, GrowthDimension.KNOW_SELF),
    ]
    assert result.memory_profile is not None and result.memory_profile["traits"] == ["patient"]
    assert result.memory_profile["cycle_start"] == START.isoformat()
    assert result.next_context is not None and result.next_context.suggested_focus == "recovery"
    assert result.latest_conversation is not None and result.latest_conversation.conversation_id == "db-conv-1"

    (request,) = server.chat_requests
    user_text = request.message_text("user")
    assert "m1. [2026-11-12, importance 8.0] Memory 1" in user_text and "c3. Lena (person)" in user_text
    assert "db-" not in request.message_text()  # the model never sees database ids
    assert '"summary": "A designer who runs."' in user_text


async def test_a_handle_that_was_not_shown_is_sent_back_for_repair(
    server: ScriptedLLMServer, agent: InsightAgent
) -> None:
    bad = insight_answer(concept_merges=[{"primary": "c1", "duplicates": ["c9"], "reason": "same"}])
    server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(insight_answer()))

    result = await agent.run(InsightInput(material()))

    assert result.llm_calls == 2 and result.merges[0].secondary_ids == ("db-c-2",)
    repair = server.chat_requests[1].messages[-1]["content"]
    assert "concept_merges[0].duplicates[0]: 'c9' was not shown to you (you were shown c1..c3)" in repair


async def test_references_still_wrong_after_repair_are_permanent(
    server: ScriptedLLMServer, agent: InsightAgent
) -> None:
    bad = insight_answer(growth_events=[{"about": "m7", "dim_key": "act_self", "delta": 0.1, "rationale": "x"}])
    server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(bad))
    with pytest.raises(PermanentError, match="'m7' was not shown to you"):
        await agent.run(InsightInput(material()))


async def test_no_memory_in_the_cycle_makes_no_call(server: ScriptedLLMServer, agent: InsightAgent) -> None:
    result = await agent.run(InsightInput(material(memory_units=(), conversations=())))
    assert result.status is InsightStatus.EMPTY and result.llm_calls == 0
    assert server.chat_requests == []


SHOWN = Shown(memory_units=2, concepts=3, communities=1)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"artifacts": []}, "give exactly one insight_summary (you gave 0)"),
        (
            {"artifacts": [{"artifact_type": "pattern", "title": "t", "narrative": "n", "sources": []}]},
            "artifacts[0].sources: name at least one",
        ),
        (
            {"artifacts": [{"artifact_type": "insight_summary", "title": "t", "narrative": "n", "sources": ["k1"]}]},
            "artifacts[0].sources[0]: 'k1' is not a handle of the kind expected here (m/c)",
        ),
        ({"concept_merges": [{"primary": "c1", "duplicates": ["c1"], "reason": ""}]}, "c1 cannot be a duplicate"),
        (
            {
                "concept_merges": [
                    {"primary": "c1", "duplicates": ["c2"], "reason": ""},
                    {"primary": "c3", "duplicates": ["c2"], "reason": ""},
                ]
            },
            "concept_merges[1]: c2 is already in concept_merges[0]",
        ),
        ({"concept_merges": [{"primary": "c1", "duplicates": [], "reason": ""}]}, "name at least one duplicate"),
        ({"communities": [{"community": "k2", "name": "n", "description": "d"}]}, "'k2' was not shown to you"),
        (
            {"communities": [{"community": "k1", "name": "n", "description": "d"}] * 2},
            "communities[1]: k1 is named twice",
        ),
    ],
)
def test_reference_checks(changes: dict[str, Any], problem: str) -> None:
    output = InsightOutput.model_validate(insight_answer(**changes))
    assert any(problem in p for p in check_references(output, SHOWN)), check_references(output, SHOWN)


def test_a_clean_answer_has_no_problems_and_limits_catch_runaways() -> None:
    output = InsightOutput.model_validate(insight_answer())
    assert check_references(output, SHOWN) == [] and check_limits(output, InsightLimits()) == []
    runaway = InsightOutput.model_validate(
        insight_answer(
            growth_events=[{"about": "m1", "dim_key": "act_self", "delta": 0.1, "rationale": "x"}] * 31,
            memory_profile={**insight_answer()["memory_profile"], "summary": " ", "traits": ["t" * 201]},
        )
    )
    assert check_limits(runaway, InsightLimits()) == [
        "growth_events: 31 items; give at most 30, the most important ones",
        "memory_profile.summary: must not be blank",
        "memory_profile.traits[0]: 201 characters; write at most 200",
    ]


def test_output_schema_is_strict_mode_compatible() -> None:
    assert_strict_mode_compatible(strict_json_schema(InsightOutput))


def test_the_view_keeps_the_token_budget_and_the_most_important_first() -> None:
    units = tuple(memory(i, importance=10 - i / 100, content="word " * 150) for i in range(1, 400))
    concepts = tuple(concept(i, f"Concept {i}") for i in range(1, 300))
    big = material(memory_units=units, concepts=concepts)
    view = build_view(InsightInput(big), 3000)

    rendered = load_prompt("insight").render(**view.variables).user
    standing = load_prompt("insight").render(**build_view(InsightInput(material(memory_units=())), 3000).variables)
    assert estimate_tokens(rendered) - estimate_tokens(standing.user) <= 3000
    assert 0 < len(view.memory_units) < len(units) and 0 < len(view.concepts) < len(concepts)
    assert view.memory_units == list(units[: len(view.memory_units)])  # a prefix: the most important ones
    assert f"m{len(view.memory_units)}." in rendered and f"m{len(view.memory_units) + 1}." not in rendered


def clique(prefix: str, size: int, weight: float = 1.0) -> list[ConceptLink]:
    names = [f"{prefix}{i}" for i in range(size)]
    return [ConceptLink(a=a, b=b, weight=weight) for a, b in itertools.combinations(names, 2)]


def test_louvain_finds_the_two_cliques_whatever_the_order() -> None:
    """Two dense groups joined by one weak link (a known answer), plus a pair of their own and a lone self-loop."""
    links = [
        *clique("a", 5),
        *clique("b", 4),
        ConceptLink(a="a0", b="b0", weight=0.1),
        ConceptLink(a="x", b="y", weight=0.5),
    ]
    expected = [("a0", "a1", "a2", "a3", "a4"), ("b0", "b1", "b2", "b3"), ("x", "y")]
    assert detect_communities(links) == expected
    shuffled = list(links)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert detect_communities(shuffled) == expected
    assert detect_communities([]) == []


def test_the_strongest_neighbours_of_the_cycle_concepts() -> None:
    links = [
        ConceptLink(a="a", b="x", weight=0.3),
        ConceptLink(a="b", b="x", weight=0.9),  # x's strongest link counts
        ConceptLink(a="y", b="a", weight=0.5),
        ConceptLink(a="a", b="b", weight=1.0),  # both are the cycle's own
        ConceptLink(a="z", b="w", weight=1.0),  # not next to the cycle
    ]
    assert strongest_neighbours(links, ["a", "b"], 5) == ["x", "y"]
    assert strongest_neighbours(links, ["a", "b"], 1) == ["x"]


def test_a_community_that_barely_changed_is_reused() -> None:
    old_a = ExistingCommunity(community_id="k-a", name="Running", description=None, core_concept_ids=("a0", "a1", "a2"))
    old_b = ExistingCommunity(community_id="k-b", name="Family", description=None, core_concept_ids=("b0", "b9"))
    found = [("a0", "a1", "a2", "a3"), ("b1", "b2", "b3")]
    assert jaccard(found[0], old_a.core_concept_ids) == 0.75
    assert match_existing(found, [old_b, old_a]) == [old_a, None]  # b shares nothing any more: a new community

    degrees = neighbour_counts(clique("a", 4))
    names = {f"a{i}": f"Concept {i}" for i in range(4)}
    candidates = community_candidates(found[:1], [old_a], degrees, names, members_shown=2)
    assert candidates == [
        CommunityCandidate(
            key="k1",
            concept_ids=found[0],
            top_members=("Concept 0", "Concept 1"),
            existing=old_a,
            fallback_name="Concept 0, Concept 1",
        )
    ]


async def test_communities_are_named_by_the_model_or_keep_a_name(
    server: ScriptedLLMServer, agent: InsightAgent
) -> None:
    previous = ExistingCommunity(community_id="db-k-1", name="Old name", description="old", core_concept_ids=())
    candidates = [
        CommunityCandidate(
            key="k1", concept_ids=("db-c-1", "db-c-3"), top_members=("Running", "Lena"), fallback_name="Running"
        ),
        CommunityCandidate(
            key="k2",
            concept_ids=("db-c-2", "db-c-9"),
            top_members=("Morning runs",),
            existing=previous,
            fallback_name="x",
        ),
        CommunityCandidate(key="k3", concept_ids=("db-c-1", "db-c-2"), top_members=("Running",), fallback_name="y"),
    ]
    named = insight_answer(communities=[{"community": "k1", "name": "Running with Lena", "description": "Both."}])
    server.enqueue(ScriptedReply.json(named))
    result = await agent.run(InsightInput(material(), candidates))

    assert [(c.key, c.existing_id, c.concept_ids, c.name, c.description) for c in result.communities] == [
        ("community:1", None, ("db-c-1", "db-c-3"), "Running with Lena", "Both."),
        ("community:2", "db-k-1", ("db-c-1", "db-c-9"), "Old name", "old"),  # c2 merged into c1 by the answer
        # community 3 was c1 and c2, one concept once merged: no community any more
    ]
    assert (
        'k2. 2 concepts: Morning runs and 1 more; previously "Old name": old' in server.chat_requests[0].message_text()
    )


def test_the_shipped_samples_are_valid_answers() -> None:
    """Valid once their references by name ("@c:Running") are handles (tests/jobs/test_insight_job.py checks they
    name what the sample user's request lists)."""
    for keyed in load_sample_answers("insight"):
        InsightOutput.model_validate(_as_handles(keyed.answer))


def _as_handles(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_handles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_handles(item) for item in value]
    found = REFERENCE.match(value) if isinstance(value, str) else None
    return f"{found.group(1)}1" if found else value
