"""The repair request is bounded whatever the answer was: a runaway answer is echoed cut (and the model is told), and
the problems are few and short."""

from __future__ import annotations

import json

from agents.llm import InMemoryCallLog, LLMClient
from agents.llm.answers import MAX_ECHOED_ANSWER_CHARS, MAX_ERRORS_IN_REPAIR
from agents.llm.policy import MAX_ERROR_TEXT
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.llm_records import CallOutcome, CallPurpose
from tests.agents.test_llm import GOOD, Verdict, ask, outcomes

RUNAWAY_CHARS = 366_803
"""The size of the insight answer that was echoed back in full."""


async def test_a_runaway_answer_is_echoed_cut_and_the_model_is_told(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    runaway = '{"mood": "good", "score": 7, "note": "' + "la " * RUNAWAY_CHARS
    runaway = runaway[:RUNAWAY_CHARS]
    server.enqueue(ScriptedReply.text(runaway), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)

    first, repair = server.chat_requests
    echoed, request = repair.messages[len(first.messages) :]
    assert echoed["role"] == "assistant" and echoed["content"] == runaway[:MAX_ECHOED_ANSWER_CHARS] + "…"
    assert (
        f"was {RUNAWAY_CHARS:,} characters long; only its first {MAX_ECHOED_ANSWER_CHARS:,} are repeated"
        in (request["content"])
    )
    assert len(json.dumps(repair.body)) < len(json.dumps(first.body)) + MAX_ECHOED_ANSWER_CHARS + 2_000
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.INVALID_JSON), (CallPurpose.REPAIR, CallOutcome.OK)]


async def test_an_answer_within_the_bound_is_echoed_whole_without_a_note(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    answer = json.dumps({**GOOD, "score": 11, "note": "x" * (MAX_ECHOED_ANSWER_CHARS - 100)})
    server.enqueue(ScriptedReply.text(answer), ScriptedReply.json(GOOD))
    await ask(client)
    echoed, request = server.chat_requests[1].messages[-2:]
    assert echoed["content"] == answer and "repeated above" not in request["content"]


async def test_many_long_problems_are_listed_few_and_short(server: ScriptedLLMServer, client: LLMClient) -> None:
    problems = [f"note: problem {n} " + "very " * 2_000 + "long" for n in range(50)]
    server.enqueue(ScriptedReply.json({**GOOD, "note": "n"}), ScriptedReply.json(GOOD))
    await ask(client, check=lambda verdict: problems if verdict.note else [])

    repair = server.chat_requests[1].messages[-1]["content"]
    listed = [line for line in repair.splitlines() if line.startswith("- note: problem")]
    assert len(listed) == MAX_ERRORS_IN_REPAIR and all(len(line) <= MAX_ERROR_TEXT + 2 for line in listed)
    assert f"- and {50 - MAX_ERRORS_IN_REPAIR} more problems like these" in repair
    assert len(repair) < MAX_ERRORS_IN_REPAIR * (MAX_ERROR_TEXT + 3) + 1_000
