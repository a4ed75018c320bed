"""What each agent's request holds that is byte-identical across users and calls, so a provider's prefix caching
bills it once: the structured-output schema (the provider's prefix), then the system message; everything about the
user comes after, in the user message. Each agent is run for two users whose data differ in every field it reads,
against the scripted server, and the requests it sent are compared (docs/llm.md, "What a request holds").

The server answers with a 400, a permanent error: the requests are what is checked here, not the answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.cycle_report import CycleInsight, CycleMaterial, CycleReportAgent, GrowthSums, Highlight, TopConcept
from agents.ingestion import IngestionAgent
from agents.ingestion.inputs import ConversationInput, ConversationMessage, ExistingConcept, IngestionInput
from agents.insight import InsightAgent
from agents.insight.view import InsightInput
from agents.llm import LLMClient
from agents.media import MediaAgent, MediaInput
from agents.proactive_prompts import CycleInsight as PromptInsight
from agents.proactive_prompts import OpenTopic, ProactivePromptAgent, PromptMaterial, RecentMemory
from agents.scripted_llm import RecordedRequest, ScriptedLLMServer, ScriptedReply
from agents.scripted_prompt_cache import prompt_text, schema_text
from core.errors import PermanentError
from core.language import user_language
from core.media import MediaKind
from core.turn_context import TurnContextPackage
from tests.agents.conftest import ClientFactory
from tests.agents.test_insight import concept, material, memory
from tests.media.files import tiny_png

START = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)
USERS = ("zuzana", "quillon")


def ingestion_input(user: str) -> IngestionInput:
    other = user == "quillon"
    messages = [
        ConversationMessage(role="assistant", content=f"Hi {user}, how was the week?", timestamp=START),
        ConversationMessage(
            role="user", content="Busy at work." if other else "I ran 10k!", timestamp=START + timedelta(minutes=3)
        ),
    ]
    conversation = ConversationInput(
        id=f"conv-{user}",
        user_id=user,
        title=f"{user}'s week",
        start_time=START + timedelta(days=other),
        messages=messages,
    )
    return IngestionInput(
        conversation=conversation,
        turn_context=TurnContextPackage(suggested_next_focus="work" if other else "running"),
        memory_profile={"summary": f"{user} is {'an engineer' if other else 'a designer'}."},
        existing_concepts=[
            ExistingConcept(concept_id=f"c-{user}", name="Work" if other else "Running", type="activity")
        ],
    )


def insight_input(user: str) -> InsightInput:
    other = user == "quillon"
    return InsightInput(
        material(
            user_id=user,
            memory_units=(memory(1, 7, content=f"{user} did something."),),
            concepts=(concept(1, "Work" if other else "Running"),),
            memory_profile={"summary": f"{user}'s profile"},
            window_start=START + timedelta(days=other),
        )
    )


def prompt_material(user: str) -> PromptMaterial:
    return PromptMaterial(
        user_id=user,
        memory_profile={"summary": f"{user}'s profile"},
        memories=[RecentMemory(memory_unit_id=f"mu-{user}", title=f"{user} ran", content=f"{user} ran.", importance=7)],
        insights=[PromptInsight(artifact_id=f"a-{user}", title=f"{user}'s week", narrative="Steady.")],
        open_topics=[OpenTopic(topic=f"{user}'s plan", suggested_question="What next?")],
        pending=[f"How is {user}?"],
        slots=2 if user == "quillon" else 3,
    )


def cycle_material(user: str) -> CycleMaterial:
    return CycleMaterial(
        user_id=user,
        user_name=user.title(),
        previous_start=START - timedelta(days=7),
        cycle_start=START,
        cycle_end=START + timedelta(days=7 if user == "zuzana" else 8),
        growth={"act_self": GrowthSums(this_cycle=0.5 if user == "zuzana" else 0.2, events=2)},
        counts={"conversations": 3 if user == "zuzana" else 1, "memory_units": 4},
        top_concepts=[TopConcept(concept_id=f"c-{user}", name=f"{user}'s thing", type="activity", mentions=2)],
        highlights=[Highlight(memory_unit_id=f"m-{user}", title=f"{user} ran", content="A run.", importance=6)],
        insights=[CycleInsight(artifact_id=f"a-{user}", artifact_type="pattern", title="Mornings", narrative="Yes.")],
    )


def media_input(user: str) -> MediaInput:
    language = user_language("pt-PT" if user == "quillon" else "en").language
    return MediaInput(
        media_id=f"m-{user}", user_id=user, kind=MediaKind.IMAGE, filename=f"{user}.png", language=language
    )


Run = Callable[[LLMClient, str], Awaitable[Any]]

AGENTS: dict[str, Run] = {
    "ingestion": lambda llm, user: IngestionAgent(llm, model="m", input_token_budget=4000).run(ingestion_input(user)),
    "insight": lambda llm, user: InsightAgent(llm, model="m", input_token_budget=4000).run(insight_input(user)),
    "proactive_prompts": lambda llm, user: ProactivePromptAgent(llm, model="m").run(prompt_material(user)),
    "cycle_report": lambda llm, user: CycleReportAgent(llm, model="m").run(cycle_material(user)),
    "media_image": lambda llm, user: MediaAgent(
        llm, vision_model="m", transcription_model="t", max_text_chars=2000
    ).read(media_input(user), tiny_png()),
}


async def requests_for_two_users(server: ScriptedLLMServer, client: LLMClient, run: Run) -> list[RecordedRequest]:
    for user in USERS:
        server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
        with pytest.raises(PermanentError):
            await run(client, user)
    return server.chat_requests


def static_part(request: RecordedRequest) -> str:
    """The schema the provider puts first, then the system message, as the provider reads them."""
    system = request.messages[0]
    assert system["role"] == "system"
    return json.dumps([schema_text(request.body), system["content"]])


@pytest.mark.parametrize("agent", list(AGENTS))
async def test_schema_and_instructions_are_byte_identical_across_users_and_come_first(
    agent: str, server: ScriptedLLMServer, client: LLMClient
) -> None:
    first, second = await requests_for_two_users(server, client, AGENTS[agent])
    assert [m["role"] for m in first.messages] == [m["role"] for m in second.messages] == ["system", "user"]
    assert first.prompt_name == second.prompt_name == agent
    assert json.dumps(first.response_format) == json.dumps(second.response_format)  # the schema, key order included
    assert static_part(first) == static_part(second)
    assert first.messages[1]["content"] != second.messages[1]["content"]  # the users' data: all in the user message
    for user, request in zip(USERS, (first, second), strict=True):
        assert user not in request.messages[0]["content"].lower()
        assert user in request.message_text("user").lower()
    # as the provider reads it, the two prompts agree up to the user message's first byte of data
    text_a, text_b = prompt_text(first.body), prompt_text(second.body)
    static_end = text_a.index("\n\nuser: ") + len("\n\nuser: ")
    assert text_a[:static_end] == text_b[:static_end]


@pytest.mark.parametrize("agent", list(AGENTS))
async def test_without_schema_support_the_schema_in_the_system_message_is_identical_too(
    agent: str, server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    """A server without json_schema gets the schema appended to the system message (JSON mode): still one static
    system message across users, the schema as the same JSON text."""
    server.supports_json_schema = False
    client = make_client()
    for user in USERS:
        server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
        with pytest.raises(PermanentError):
            await AGENTS[agent](client, user)
    json_mode = [r for r in server.chat_requests if (r.response_format or {}).get("type") == "json_object"]
    assert len(json_mode) == 2
    first, second = json_mode
    assert first.messages[0] == second.messages[0] and "<json_schema>" in first.messages[0]["content"]
    assert first.messages[1] != second.messages[1]


async def test_a_long_conversation_s_window_has_the_same_system_message_and_the_user_s_context_before_its_place(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    """ "Part i of n" comes in the user message after the user's stable context (prompts/ingestion.j2), not in the
    system message: a window's request shares the whole system message and the profile, concepts and turn context
    with a short conversation's request of the same user, and differs only from its place in the conversation on."""
    long = ingestion_input("zuzana")
    messages = [
        ConversationMessage(role="user", content=f"Message {i}: " + "running and work " * 40, timestamp=START)
        for i in range(40)
    ]
    long = long.model_copy(update={"conversation": long.conversation.model_copy(update={"messages": messages})})
    server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
    with pytest.raises(PermanentError):
        await IngestionAgent(client, model="m", input_token_budget=1500).run(long)
    server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
    with pytest.raises(PermanentError):
        await IngestionAgent(client, model="m", input_token_budget=4000).run(ingestion_input("zuzana"))
    window, short = server.chat_requests
    assert window.messages[0] == short.messages[0]
    assert "part" not in window.messages[0]["content"].split("What to extract")[0]
    window_user, short_user = window.messages[1]["content"], short.messages[1]["content"]
    place = window_user.index("this is part 1 of")
    shared = window_user[: window_user.rindex("\n", 0, place)]
    assert "</turn_context>" in shared and short_user.startswith(shared)


async def test_the_turn_context_comes_after_the_user_s_existing_concepts(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    """Two conversations of one user ingested in a row have the same profile and existing concepts but a new turn
    context each: the concepts come first, so the two prompts share them as a cached prefix."""
    for focus in ("running", "sleep"):
        data = ingestion_input("zuzana")
        data = data.model_copy(update={"turn_context": TurnContextPackage(suggested_next_focus=focus)})
        server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
        with pytest.raises(PermanentError):
            await IngestionAgent(client, model="m", input_token_budget=4000).run(data)
    first, second = (request.messages[1]["content"] for request in server.chat_requests)
    concepts_end = first.index("</existing_concepts>") + len("</existing_concepts>")
    assert "<memory_profile>" in first[:concepts_end] and "<turn_context>" in first[concepts_end:]
    assert first[:concepts_end] == second[:concepts_end] and first != second


async def test_insight_puts_the_cycle_s_dates_and_counts_after_the_user_s_profile(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    """The cycle (dates, counts) is new with every call; the user's language, memory profile, graph schema and
    next-conversation context change less often, so they come first in the user message."""
    with pytest.raises(PermanentError):
        server.enqueue(ScriptedReply.error(400, "the request is what this test reads"))
        await AGENTS["insight"](client, "zuzana")
    user = server.chat_requests[0].messages[1]["content"]
    assert user.startswith("<language>") and user.index("</language>") < user.index("<memory_profile>")
    assert user.index("</next_context>") < user.index("<cycle>") < user.index("<growth>")


SCHEMAS_SCRIPT = """
import json
from agents.cycle_report.schema import CycleReportOutput
from agents.ingestion.schema import IngestionOutput
from agents.insight.schema import InsightOutput
from agents.llm import strict_json_schema
from agents.media.schema import ImageReading
from agents.proactive_prompts.schema import ProactivePromptsOutput
outputs = (IngestionOutput, InsightOutput, ProactivePromptsOutput, CycleReportOutput, ImageReading)
print(json.dumps([strict_json_schema(output) for output in outputs]))
"""


def test_every_agent_s_schema_is_the_same_bytes_in_every_worker_process() -> None:
    """Workers are separate processes with their own string hash seeds: a schema built by iterating a set (an enum
    from a frozenset, say) would differ between them, and every worker would miss the others' cache."""
    root = Path(__file__).resolve().parents[2]
    printed = {
        subprocess.run(
            [sys.executable, "-c", SCHEMAS_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(printed) == 1 and len(json.loads(printed.pop())) == 5
