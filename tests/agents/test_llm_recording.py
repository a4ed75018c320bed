"""Every call that reached the model is recorded, however it ends: a check that raises, a validator that raises, a
timeout, a broken or unreadable body, a cancelled task (the token budget and the cost are summed from these rows);
and an answer no parser can use is a problem for the model, not a crash."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pydantic import field_validator

from agents.llm import CallContext, InMemoryCallLog, LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.errors import PermanentError, TransientError
from core.llm_records import CallOutcome, CallPurpose
from store.llm_calls import PostgresCallLog, list_llm_calls, tokens_used_since
from tests.agents.conftest import FAST, SHORT_TIMEOUT_S, ClientFactory
from tests.agents.test_llm import CONTEXT, GOOD, PROMPT, Verdict, ask, outcomes


def crashing_check(verdict: Verdict) -> list[str]:
    """A check with the defect the prompts agent had: `"²".isdigit()` is True, `int("²")` raises."""
    note = verdict.note or ""
    return [] if not note.isdigit() or int(note) < 5 else ["note: too high"]


async def test_a_check_that_raises_is_recorded_and_fails_clearly_without_a_repair(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.json({**GOOD, "note": "²"}), ScriptedReply.json(GOOD))
    with pytest.raises(PermanentError, match=r"checking the model's answer raised.*ValueError.*defect in the agent"):
        await ask(client, check=crashing_check)
    (record,) = [record for _, record in call_log.records]
    assert (record.purpose, record.outcome) == (CallPurpose.ANSWER, CallOutcome.CHECK_FAILED)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0  # what the server reported it cost
    assert record.error is not None and "ValueError" in record.error
    assert len(server.chat_requests) == 1  # a defect of ours is not the model's to repair


class Fussy(Verdict):
    @field_validator("note")
    @classmethod
    def _fussy(cls, value: str | None) -> str | None:
        if value == "boom":
            raise LookupError("a validator raising what pydantic does not catch")
        return value


async def test_a_validator_that_raises_is_recorded_and_fails_clearly(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.json({**GOOD, "note": "boom"}))
    with pytest.raises(PermanentError, match="validating raised LookupError"):
        await client.complete(PROMPT, Fussy, model="test-model", context=CONTEXT)
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.CHECK_FAILED)]


@pytest.mark.parametrize(
    ("reply", "outcome", "said"),
    [
        (ScriptedReply.slow(1.0), CallOutcome.TIMEOUT, "timed out"),
        (ScriptedReply.cut(GOOD, at=30), CallOutcome.CONNECTION_ERROR, "broke while the answer was read"),
        (ScriptedReply.garbled("{not json"), CallOutcome.SERVER_ERROR, "not a chat completion"),
    ],
    ids=["timeout", "broken-body", "unreadable-body"],
)
async def test_a_call_cut_off_after_it_was_sent_counts_its_prompt(
    server: ScriptedLLMServer,
    make_client: ClientFactory,
    call_log: InMemoryCallLog,
    reply: ScriptedReply,
    outcome: CallOutcome,
    said: str,
) -> None:
    server.enqueue(reply)
    with pytest.raises(TransientError, match=outcome.value):
        await ask(make_client(max_retries=0, timeout_s=SHORT_TIMEOUT_S if outcome is CallOutcome.TIMEOUT else 5.0))
    ((_, record),) = call_log.records
    assert record.outcome is outcome and record.error is not None and said in record.error
    assert record.prompt_tokens > 0 and record.completion_tokens == 0  # the provider bills a prompt it received


async def test_a_refused_connection_costs_nothing(make_client: ClientFactory, call_log: InMemoryCallLog) -> None:
    with ScriptedLLMServer() as gone:
        url = gone.base_url
    with pytest.raises(TransientError, match="cannot connect"):
        await ask(make_client(base_url=url, max_retries=0))
    assert [(r.outcome, r.prompt_tokens) for _, r in call_log.records] == [(CallOutcome.CONNECTION_ERROR, 0)]


async def wait_for_request(server: ScriptedLLMServer) -> None:
    """Until the server has the request: progress, not a wall clock."""
    while True:
        if server.chat_requests:
            return
        await asyncio.sleep(0.01)  # the server records requests from its own thread


async def test_a_cancelled_call_is_recorded_in_postgres(pool: asyncpg.Pool, server: ScriptedLLMServer) -> None:
    """The job's timeout cancels its task while the model works: the call is in runtime.llm_calls all the same."""
    server.enqueue(ScriptedReply.slow(30.0))
    options: dict[str, Any] = {**FAST, "timeout_s": 60.0}
    async with LLMClient(base_url=server.base_url, api_key="k", call_log=PostgresCallLog(pool), **options) as client:
        context = CallContext(user_id="user-1", agent="probe", job_id="job-1")
        task = asyncio.create_task(client.complete(PROMPT, Verdict, model="test-model", context=context))
        await wait_for_request(server)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (stored,) = await list_llm_calls(pool, "user-1")
    assert (stored.call.outcome, stored.call.job_id) == (CallOutcome.CANCELLED, "job-1")
    assert stored.call.error is not None and "cancelled" in stored.call.error
    assert stored.call.prompt_tokens > 0
    assert await tokens_used_since(pool, "user-1", stored.created_at) == stored.call.prompt_tokens


async def test_a_job_timeout_around_the_call_still_times_out(
    server: ScriptedLLMServer, make_client: ClientFactory, call_log: InMemoryCallLog
) -> None:
    """Recording a cancelled call does not swallow the cancellation: asyncio.timeout (the job runtime's) fires."""
    server.enqueue(ScriptedReply.slow(30.0))
    client = make_client(timeout_s=60.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await ask(client)
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.CANCELLED)]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"mood": "good", "score": ' + "1" * 5_000 + ', "note": null}', "Exceeds the limit"),
        ("[" * 100_000, "nested too deeply"),
        ('{"mood": "good", "score": 7, "note": null, "x": NaN}', "NaN is not a JSON number"),
    ],
    ids=["number-over-int-digit-limit", "nesting-too-deep", "nan"],
)
async def test_json_no_parser_can_use_goes_back_to_the_model(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog, answer: str, problem: str
) -> None:
    server.enqueue(ScriptedReply.text(answer), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)
    assert problem in server.chat_requests[1].messages[-1]["content"]
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.INVALID_JSON), (CallPurpose.REPAIR, CallOutcome.OK)]
