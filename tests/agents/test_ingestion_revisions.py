"""Ingestion's one call shows the model the user's nearest earlier memories as handles (p1..) within a token budget,
and its answer may say a new memory retells or updates one of them: the result names the earlier unit's id, which the
model never saw, and a handle it was not shown goes back to it in the repair request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agents.ingestion import EarlierMemory, IngestionAgent, IngestionOutput, check_references
from agents.ingestion.agent import EARLIER_CONTENT_CHARS, shown_earlier
from agents.llm import LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.revisions import RevisionKind
from tests.agents.test_ingestion import START, answer, make_input

EARLIER = [
    EarlierMemory(
        memory_unit_id="db-mu-run",
        title="Ran 10k without stopping",
        content="She ran 10k along the river without stopping, her first time.",
        creation_ts=START - timedelta(days=30),
    ),
    EarlierMemory(
        memory_unit_id="db-mu-dad",
        title="Dad recovering from knee surgery",
        content="Her dad had knee surgery and is recovering at home.",
        creation_ts=START - timedelta(days=20),
    ),
]


def unit(
    key: str, title: str, *, retells: str | None = None, updates: str | None = None, **more: Any
) -> dict[str, Any]:
    return {
        "key": key,
        "title": title,
        "content": f"{title}.",
        "creation_ts": None,
        "importance": more.get("importance", 6),
        "sentiment": 0.4,
        "retells": retells,
        "updates": updates,
    }


@pytest.fixture
def agent(client: LLMClient) -> IngestionAgent:
    return IngestionAgent(client, model="test-model", input_token_budget=4000)


async def test_a_retelling_and_a_change_name_the_earlier_units_the_model_saw_as_handles(
    server: ScriptedLLMServer, agent: IngestionAgent
) -> None:
    server.enqueue(
        ScriptedReply.json(
            answer(
                memory_units=[
                    unit("m1", "Ran 10k without stopping, by the river", retells="p1", importance=8),
                    unit("m2", "Dad walks without crutches", updates="p2"),
                    unit("m3", "Signed up for a 5k"),
                ]
            )
        )
    )
    data = make_input(
        [("user", "Remember my first 10k? And Dad walks without crutches now!")], earlier_memories=EARLIER
    )
    result = await agent.run(data)

    assert result.earlier_memories_shown == 2
    assert [(u.key, u.revises, u.revision) for u in result.memory_units] == [
        ("m1", "db-mu-run", RevisionKind.RETOLD),
        ("m2", "db-mu-dad", RevisionKind.UPDATED),
        ("m3", None, None),
    ]
    (request,) = server.chat_requests
    user_text = request.message_text("user")
    assert "p1. [2026-04-01] Ran 10k without stopping: She ran 10k along the river" in user_text
    assert "p2. [2026-04-11] Dad recovering from knee surgery" in user_text
    assert "db-mu" not in request.message_text()  # the model never sees database ids
    assert "set retells to its handle" in request.message_text("system")


async def test_without_earlier_memories_the_prompt_says_nothing_of_them(
    server: ScriptedLLMServer, agent: IngestionAgent
) -> None:
    server.enqueue(ScriptedReply.json(answer()))
    result = await agent.run(make_input([("user", "I ran today.")]))
    (request,) = server.chat_requests
    assert "earlier_memories>" not in request.message_text("user")
    assert "set retells to its handle" not in request.message_text("system")
    assert result.earlier_memories_shown == 0 and result.memory_units[0].revises is None


async def test_a_handle_that_was_not_shown_goes_back_for_repair(
    server: ScriptedLLMServer, agent: IngestionAgent
) -> None:
    bad = answer(memory_units=[unit("m1", "Ran again", retells="p3")])
    good = answer(memory_units=[unit("m1", "Ran again", retells="p1")])
    server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(good))

    result = await agent.run(make_input([("user", "Ran again.")], earlier_memories=EARLIER))

    assert result.memory_units[0].revises == "db-mu-run" and result.llm_calls == 2
    repair = server.chat_requests[1].messages[-1]["content"]
    assert "memory_units[0].retells: 'p3' was not shown to you (you were shown p1..p2)" in repair


@pytest.mark.parametrize(
    ("units", "problem"),
    [
        ([unit("m1", "A", retells="p1", updates="p2")], "it retells or it updates an earlier memory, not both"),
        (
            [unit("m1", "A", retells="p1"), unit("m2", "B", updates="p1")],
            "memory_units[1].updates: p1 is already revised by memory_units[0]",
        ),
        ([unit("m1", "A", updates="p1")], "'p1' was not shown to you (you were shown none)"),
    ],
)
def test_reference_checks_of_earlier_memories(units: list[dict[str, Any]], problem: str) -> None:
    output = IngestionOutput.model_validate(answer(memory_units=units))
    earlier = 0 if "none" in problem else 2
    problems = check_references(output, handle_count=0, earlier_count=earlier)
    assert any(problem in p for p in problems), problems


def test_the_budget_decides_how_many_earlier_memories_are_shown() -> None:
    long = EarlierMemory(
        memory_unit_id="db-mu-long", title="Long", content="word " * 400, creation_ts=START - timedelta(days=1)
    )
    everything = shown_earlier([*EARLIER, long], 10_000)
    assert [line["handle"] for _, line in everything] == ["p1", "p2", "p3"]
    assert len(everything[2][1]["content"]) == EARLIER_CONTENT_CHARS  # cut, with an ellipsis
    assert shown_earlier(EARLIER, 0) == []
    first_only = shown_earlier(EARLIER, 30)
    assert [memory.memory_unit_id for memory, _ in first_only] == ["db-mu-run"]  # nearest first, never skipping
