"""ProactivePromptAgent over real HTTP against the scripted server: handles resolved to the ids they stand for, an
answer citing a handle it was not shown sent back once and then refused, and no call when there is nothing to ask."""

from __future__ import annotations

from typing import Any

import pytest

from agents.llm import LLMClient
from agents.proactive_prompts import CycleInsight, OpenTopic, ProactivePromptAgent, PromptMaterial, RecentMemory
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.errors import PermanentError


def material(slots: int = 3) -> PromptMaterial:
    return PromptMaterial(
        user_id="u1",
        memories=[
            RecentMemory(memory_unit_id="mu-a", title="Ran 10k", content="Maya ran 10k.", importance=8),
            RecentMemory(memory_unit_id="mu-b", title="Shins", content="Sore shins.", importance=5),
        ],
        insights=[CycleInsight(artifact_id="art-1", title="Patience pays", narrative="Easy pace works.")],
        open_topics=[OpenTopic(topic="Half marathon plan", suggested_question="What is the plan?")],
        pending=["How are the shins?"],
        slots=slots,
    )


def answer(*sources: str) -> dict[str, Any]:
    prompt = {
        "prompt_text": "Ready to plan October?",
        "priority": 7,
        "rationale": "A goal needs a plan.",
        "suggested_timing": "within_days",
        "sources": list(sources),
    }
    return {"prompts": [prompt]}


async def test_handles_are_resolved_to_the_ids_they_stand_for(server: ScriptedLLMServer, client: LLMClient) -> None:
    server.enqueue(ScriptedReply.json(answer("m2", "i1", "t1", "m2")))
    result = await ProactivePromptAgent(client, model="m").run(material())

    [draft] = result.drafts
    assert (draft.memory_unit_ids, draft.artifact_ids, draft.topics) == (["mu-b"], ["art-1"], ["Half marathon plan"])
    assert (draft.priority, draft.suggested_timing, result.usage.calls) == (7, "within_days", 1)
    [request] = server.chat_requests
    text = request.message_text()
    assert "How are the shins?" in text and "at most 3 new prompts" in text
    assert request.prompt_name == "proactive_prompts"


async def test_a_handle_it_was_not_shown_is_sent_back_once_then_refused(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    server.enqueue(ScriptedReply.json(answer("m9")), ScriptedReply.json(answer("m9")))
    with pytest.raises(PermanentError, match="m9"):
        await ProactivePromptAgent(client, model="m").run(material())
    repair = server.chat_requests[1].message_text()
    assert "'m9' was not shown to you (you were shown m1..m2)" in repair


async def test_a_repaired_answer_is_taken(server: ScriptedLLMServer, client: LLMClient) -> None:
    server.enqueue(ScriptedReply.json(answer("t4")), ScriptedReply.json(answer("t1")))
    result = await ProactivePromptAgent(client, model="m").run(material())
    assert result.drafts[0].topics == ["Half marathon plan"] and result.usage.calls == 2


@pytest.mark.parametrize("empty", [{"slots": 0}, {"memories": [], "insights": [], "open_topics": []}])
async def test_no_free_slot_or_no_material_makes_no_call(
    server: ScriptedLLMServer, client: LLMClient, empty: dict[str, Any]
) -> None:
    result = await ProactivePromptAgent(client, model="m").run(material().model_copy(update=empty))
    assert result.drafts == [] and result.usage.calls == 0 and server.chat_requests == []
