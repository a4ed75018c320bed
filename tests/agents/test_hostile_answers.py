"""Hostile answers, agent by agent, over real HTTP: whatever the model writes, the agent's checks return problems (the
model gets one repair request, and the repaired answer is taken) and never raise; every call is recorded.

Each table row is one answer a check once crashed on, or let through to fail at the write: handles spelled so that
`str.isdigit`, `int` or a `$` regex misread them ("m²", "m1\\n", 5000 digits), text Postgres cannot store at any
depth (NUL, lone surrogates in `list[str]` fields), numbers no parser can read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from agents.cycle_report import CycleMaterial, CycleReportAgent
from agents.ingestion import IngestionAgent
from agents.insight import InsightAgent, InsightInput
from agents.llm import InMemoryCallLog, LLMClient
from agents.proactive_prompts import ProactivePromptAgent
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.llm_records import CallOutcome, CallPurpose
from store.llm_calls import PostgresCallLog, list_llm_calls
from tests.agents.conftest import FAST
from tests.agents.test_ingestion import answer as ingestion_answer
from tests.agents.test_ingestion import concept, growth, make_input, rel
from tests.agents.test_insight import insight_answer
from tests.agents.test_insight import material as insight_material
from tests.agents.test_proactive_prompts import answer as prompts_answer
from tests.agents.test_proactive_prompts import material as prompts_material

LONG_NUMBER = "1" * 5_000
"""More digits than Python's int() reads (4300): a regex that allows any number of digits lets it through."""


async def assert_repaired(
    server: ScriptedLLMServer, call_log: InMemoryCallLog, run: Callable[[], Any], said: str
) -> Any:
    """With a hostile answer then a valid one queued: the agent returns the repaired result, the repair request
    names the problem, and both calls are recorded."""
    result = await run()
    repair = server.chat_requests[1].messages[-1]["content"]
    assert said in repair, repair
    (first_purpose, first), (second_purpose, second) = [(r.purpose, r.outcome) for _, r in call_log.records]
    assert first in (CallOutcome.SCHEMA_INVALID, CallOutcome.INVALID_JSON), first
    assert (first_purpose, second_purpose, second) == (CallPurpose.ANSWER, CallPurpose.REPAIR, CallOutcome.OK)
    return result


def source_handles(*sources: str) -> ScriptedReply:
    return ScriptedReply.json(prompts_answer(*sources))


@pytest.mark.parametrize(
    ("sources", "said"),
    [
        (["m²"], "'m²' is not a handle of the kind expected here (m/i/t)"),
        (["m1\n"], "'m1\\n' is not a handle"),
        (["m01"], "'m01' is not a handle"),
        (["m\u0661"], "is not a handle"),  # an Arabic-Indic one: isdigit() and int() both accept it
        ([" m1"], "' m1' is not a handle"),
        (["M1"], "'M1' is not a handle"),
        (["m" + LONG_NUMBER], "(5001 characters) is not a handle"),
        ([""], "'' is not a handle"),
        (["i0"], "'i0' is not a handle"),
        (["t2"], "'t2' was not shown to you (you were shown t1..t1)"),
    ],
)
async def test_proactive_prompts(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, sources: list[str], said: str
) -> None:
    server.enqueue(source_handles(*sources), source_handles("m1"))
    result = await assert_repaired(
        server, call_log, lambda: ProactivePromptAgent(client, model="m").run(prompts_material()), said
    )
    assert result.drafts[0].memory_unit_ids == ["mu-a"]


PROFILE = insight_answer()["memory_profile"]
SUMMARY = insight_answer()["artifacts"][0]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"artifacts": [{**SUMMARY, "sources": ["m1\n"]}]}, "'m1\\n' is not a handle of the kind expected here (m/c)"),
        ({"artifacts": [{**SUMMARY, "sources": ["c²"]}]}, "'c²' is not a handle"),
        ({"artifacts": [{**SUMMARY, "sources": ["m" + LONG_NUMBER]}]}, "(5001 characters) is not a handle"),
        ({"artifacts": [{**SUMMARY, "sources": ["m\u0663"]}]}, "is not a handle"),
        ({"concept_merges": [{"primary": "c1", "duplicates": ["c2\n"], "reason": ""}]}, "'c2\\n' is not a handle"),
        ({"concept_merges": [{"primary": "c1\n", "duplicates": ["c2"], "reason": ""}]}, "primary: String should"),
        ({"concept_merges": [{"primary": "c" + LONG_NUMBER, "duplicates": ["c2"], "reason": ""}]}, "String should"),
        (
            {"growth_events": [{"about": "m1\n", "dim_key": "act_self", "delta": 0.1, "rationale": "x"}]},
            "growth_events[0].about: String should match pattern",
        ),
        (
            {"growth_events": [{"about": "m1", "dim_key": "act_self", "delta": math.nan, "rationale": "x"}]},
            "NaN is not a JSON number",
        ),
        ({"communities": [{"community": "k1\n", "name": "n", "description": "d"}]}, "String should match"),
        ({"memory_profile": {**PROFILE, "traits": ["pa\u0000tient"]}}, "memory_profile.traits: Value error, [0]"),
        ({"memory_profile": {**PROFILE, "values": ["ok", "\ud800"]}}, "memory_profile.values: Value error, [1]"),
        ({"memory_profile": {**PROFILE, "key_people": ["Lena \udfff"]}}, "unpaired surrogate"),
        ({"memory_profile": {**PROFILE, "summary": "\u0000"}}, "memory_profile.summary: Value error, contains"),
    ],
)
async def test_insight(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, changes: dict[str, Any], said: str
) -> None:
    server.enqueue(ScriptedReply.json(insight_answer(**changes)), ScriptedReply.json(insight_answer()))
    agent = InsightAgent(client, model="test-model", input_token_budget=4000)
    result = await assert_repaired(server, call_log, lambda: agent.run(InsightInput(insight_material())), said)
    assert result.memory_profile is not None and result.memory_profile["traits"] == ["patient"]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"relationships": [rel("m1", "e" + LONG_NUMBER)]}, "target: String should match pattern"),
        ({"growth_events": [growth("e" + LONG_NUMBER)]}, "about: String should match pattern"),
        ({"memory_units": [{**ingestion_answer()["memory_units"][0], "key": "m1\n"}]}, "key: String should match"),
        ({"relationships": [rel("m1", "e1\n")]}, "target: String should match pattern"),
        ({"relationships": [rel("m1", "e²")]}, "target: String should match pattern"),
        ({"growth_events": [growth("e3")]}, "'e3' refers to existing concept 3, which was not listed"),
        ({"concepts": [concept("c1", "Running", handle=10**30)]}, "was not listed"),
        ({"concepts": [{**concept("c1", "Running"), "type": "\ud800"}]}, "concepts[0].type: Value error"),
        ({"importance_score": math.inf}, "Infinity is not a JSON number"),
    ],
)
async def test_ingestion(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, changes: dict[str, Any], said: str
) -> None:
    server.enqueue(ScriptedReply.json(ingestion_answer(**changes)), ScriptedReply.json(ingestion_answer()))
    agent = IngestionAgent(client, model="test-model", input_token_budget=4000)
    result = await assert_repaired(server, call_log, lambda: agent.run(make_input([("user", "I ran 10k.")])), said)
    assert [m.title for m in result.memory_units] == ["Ran 10k"]


REPORT = {"title": "A steady week", "narrative": "You ran three times."}


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (ScriptedReply.json({**REPORT, "title": "A\u0000week"}), "title: Value error, contains a NUL"),
        (ScriptedReply.json({**REPORT, "narrative": "\ud83c"}), "narrative: Value error"),
        (ScriptedReply.json({**REPORT, "extra\u0000": 1}), "Extra inputs are not permitted"),
        (ScriptedReply.text('{"title": ' + LONG_NUMBER + ', "narrative": "n"}'), "not usable JSON"),
        # the answer text itself holds the surrogate: the response body carries its escape, which pydantic's JSON
        # parser refuses; it is the model's answer all the same, so it goes back for repair, echoed as U+FFFD
        (ScriptedReply.text('{"title": "A week", "narrative": "You ran \ud83c"}'), "narrative: Value error"),
    ],
)
async def test_cycle_report(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, reply: ScriptedReply, said: str
) -> None:
    server.enqueue(reply, ScriptedReply.json(REPORT))
    material = CycleMaterial.model_validate(
        {
            "user_id": "u1",
            "previous_start": "2026-11-05T00:00:00Z",
            "cycle_start": "2026-11-12T00:00:00Z",
            "cycle_end": "2026-11-19T00:00:00Z",
            "counts": {"conversations": 2},
        }
    )
    report = await assert_repaired(server, call_log, lambda: CycleReportAgent(client, model="m").run(material), said)
    assert report.title == "A steady week"


async def test_problems_quoting_unstorable_text_are_recorded_in_postgres(
    pool: asyncpg.Pool, server: ScriptedLLMServer
) -> None:
    """A problem may quote the answer (a key, a handle): what goes into runtime.llm_calls can always be stored."""
    hostile = prompts_answer("m\u0000\ud800")
    hostile["prompts"][0]["\u0000key"] = 1
    server.enqueue(ScriptedReply.json(hostile), ScriptedReply.json(prompts_answer("m1")))
    async with LLMClient(base_url=server.base_url, api_key="k", call_log=PostgresCallLog(pool), **FAST) as client:
        await ProactivePromptAgent(client, model="m").run(prompts_material(), job_id="prompts:u1")
    first, repaired = await list_llm_calls(pool, "u1")
    assert (first.call.outcome, repaired.call.outcome) == (CallOutcome.SCHEMA_INVALID, CallOutcome.OK)
    assert first.call.error is not None and "Extra inputs are not permitted" in first.call.error


async def test_a_prompt_holding_an_unpaired_surrogate_is_sent_as_utf8(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    """Turn context read from Redis is JSON and may hold one: before, the request failed to encode on every try."""
    material = prompts_material()
    material.pending.append("How was the \udc00 run?")
    server.enqueue(source_handles("m1"))
    result = await ProactivePromptAgent(client, model="m").run(material)
    assert result.drafts and "How was the \ufffd run?" in server.chat_requests[0].message_text()
    assert [r.outcome for _, r in call_log.records] == [CallOutcome.OK]
