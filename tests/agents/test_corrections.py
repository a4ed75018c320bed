"""The corrections agent: one call for a batch of the user's interactions, handles resolved to ids the model never
saw, and every answer problem (an unknown handle, a target of the wrong kind, an action missing what it needs) sent
back once for repair."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agents.corrections import (
    CorrectionMaterial,
    CorrectionsAgent,
    CorrectionsOutput,
    Interaction,
    TargetConcept,
    TargetMemory,
    check_decisions,
)
from agents.handles import Listing
from agents.llm import LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from core.corrections import CorrectionAction, CorrectionDecision

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MATERIAL = CorrectionMaterial(
    user_id="user-1",
    interactions=[
        Interaction(interaction_id="db-i-1", kind="correction", at=AT, text="It was 15 km", target_id="db-mu-run"),
        Interaction(interaction_id="db-i-2", kind="card_feedback", at=AT, verdict="accurate", target_id="db-c-lena"),
        Interaction(interaction_id="db-i-3", kind="reflection", at=AT, text="I love early runs"),
    ],
    memories=[TargetMemory(memory_unit_id="db-mu-run", title="Long run", content="Ran 14 km.", importance=8)],
    concepts=[TargetConcept(concept_id="db-c-lena", name="Lena", type="person", description="Her sister")],
)


def decision(interaction: str, action: str, target: str | None = None, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"title": None, "content": None, "importance": None, "description": None}
    return {"interaction": interaction, "action": action, "target": target, **base, **values, "reason": "because"}


@pytest.fixture
def agent(client: LLMClient) -> CorrectionsAgent:
    return CorrectionsAgent(client, model="test-model")


async def test_one_call_decides_the_batch_and_names_ids_the_model_never_saw(
    server: ScriptedLLMServer, agent: CorrectionsAgent
) -> None:
    server.enqueue(
        ScriptedReply.json(
            {
                "decisions": [
                    decision("i1", "revise_memory", "m1", content="Ran 15 km."),
                    decision("i2", "none", "c1"),
                    decision("i3", "add_memory", None, title="Early runs", content="Loves them.", importance=6),
                ]
            }
        )
    )
    result = await agent.run(MATERIAL, job_id="apply_corrections:user-1")

    assert result.decisions == [
        CorrectionDecision(
            "db-i-1", CorrectionAction.REVISE_MEMORY, "because", target_id="db-mu-run", content="Ran 15 km."
        ),
        CorrectionDecision("db-i-2", CorrectionAction.NONE, "because"),
        CorrectionDecision(
            "db-i-3", CorrectionAction.ADD_MEMORY, "because", title="Early runs", content="Loves them.", importance=6
        ),
    ]
    (request,) = server.chat_requests  # one call for the three interactions
    text = request.message_text("user")
    assert "i1. [2026-11-02] correction about m1: It was 15 km" in text
    assert "i2. [2026-11-02] card_feedback about c1, verdict: accurate" in text
    assert "m1. Long run (importance 8.0): Ran 14 km." in text and "c1. Lena (person): Her sister" in text
    assert "db-" not in request.message_text()


async def test_nothing_to_decide_makes_no_call(server: ScriptedLLMServer, agent: CorrectionsAgent) -> None:
    result = await agent.run(CorrectionMaterial(user_id="user-1", interactions=[]))
    assert result.decisions == [] and server.chat_requests == []


async def test_a_wrong_answer_is_sent_back_once(server: ScriptedLLMServer, agent: CorrectionsAgent) -> None:
    bad = {"decisions": [decision("i1", "revise_memory", "c1", content="x"), decision("i4", "none")]}
    good = {"decisions": [decision("i1", "forget_memory", "m1")]}
    server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(good))
    result = await agent.run(MATERIAL)
    assert [(d.interaction_id, d.action, d.target_id) for d in result.decisions] == [
        ("db-i-1", CorrectionAction.FORGET_MEMORY, "db-mu-run")
    ]
    repair = server.chat_requests[1].messages[-1]["content"]
    assert "decisions[0].target: revise_memory changes a memory, not c1" in repair
    assert "decisions[1].interaction: 'i4' was not shown to you (you were shown i1..i3)" in repair


@pytest.mark.parametrize(
    ("decisions", "problem"),
    [
        ([decision("i1", "revise_memory", "m1")], "revise_memory needs a new title, content or importance"),
        ([decision("i1", "revise_concept", "c1")], "revise_concept needs the concept's new description"),
        ([decision("i1", "forget_memory")], "forget_memory needs the handle of the memory it changes"),
        ([decision("i1", "add_memory", title="t")], "add_memory needs a title, content and importance"),
        ([decision("i1", "none"), decision("i1", "none")], "i1 is decided twice"),
        ([decision("i1", "none", "m2")], "'m2' was not shown to you (you were shown m1..m1)"),
        ([decision("i1", "revise_memory", "m1", content=" ")], "decisions[0].content: must not be blank"),
    ],
)
def test_decision_checks(decisions: list[dict[str, Any]], problem: str) -> None:
    output = CorrectionsOutput.model_validate({"decisions": decisions})
    problems = check_decisions(output, Listing({"i": 3, "m": 1, "c": 1}))
    assert any(problem in p for p in problems), problems


async def test_the_demo_interactions_through_the_shipped_sample(call_log: Any) -> None:
    """agents/samples/corrections.json answers the demo's batch (a correction and a reflection) by what it shows."""
    material = CorrectionMaterial(
        user_id="user-1",
        interactions=[
            Interaction(
                interaction_id="db-i-1",
                kind="correction",
                at=AT,
                text="It was not really an argument, we just disagreed calmly.",
                target_id="db-mu-lena",
            ),
            Interaction(
                interaction_id="db-i-2", kind="reflection", at=AT, text="I want to remember that Lena and I are a team."
            ),
        ],
        memories=[
            TargetMemory(
                memory_unit_id="db-mu-lena", title="Argument with Lena about caring for Dad", content="Lena feels…"
            )
        ],
    )
    with ScriptedLLMServer(keyed_answers=load_sample_answers("corrections")) as scripted:
        async with LLMClient(base_url=scripted.base_url, api_key="scripted", call_log=call_log, timeout_s=5) as llm:
            result = await CorrectionsAgent(llm, model="scripted").run(material)
    assert [(d.interaction_id, d.action, d.target_id) for d in result.decisions] == [
        ("db-i-1", CorrectionAction.REVISE_MEMORY, "db-mu-lena"),
        ("db-i-2", CorrectionAction.ADD_MEMORY, None),
    ]
