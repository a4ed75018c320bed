"""The LLM layer against a real HTTP server with the real openai client: repair, retries, fallbacks, budget."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from agents.llm import CallContext, InMemoryCallLog, LLMClient, next_utc_midnight, open_llm_client, strict_json_schema
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.errors import DeferredError, PermanentError, TransientError
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from prompts import RenderedPrompt
from settings import load_settings
from tests.agents.conftest import SHORT_TIMEOUT_S, ClientFactory


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mood: Literal["good", "bad"]
    score: int = Field(ge=1, le=10)
    note: str | None


PROMPT = RenderedPrompt(name="probe", version="0123456789ab", system="You judge moods.", user="How was the day?")
CONTEXT = CallContext(user_id="user-1", agent="probe", job_id="job-1")
GOOD = {"mood": "good", "score": 7, "note": None}


async def ask(client: LLMClient, **kwargs: Any) -> Verdict:
    answer = await client.complete(PROMPT, Verdict, model="test-model", context=CONTEXT, **kwargs)
    return answer.value


def outcomes(log: InMemoryCallLog) -> list[tuple[CallPurpose, CallOutcome]]:
    return [(record.purpose, record.outcome) for _, record in log.records]


async def test_valid_answer(server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog) -> None:
    server.enqueue(ScriptedReply.json(GOOD))
    answer = await client.complete(PROMPT, Verdict, model="test-model", context=CONTEXT)
    assert answer.value == Verdict(mood="good", score=7, note=None)
    assert answer.usage.calls == 1 and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0

    (request,) = server.chat_requests
    assert request.body["model"] == "test-model"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.messages == [
        {"role": "system", "content": "You judge moods."},
        {"role": "user", "content": "How was the day?"},
    ]
    response_format = request.response_format
    assert response_format is not None and response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Verdict"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["additionalProperties"] is False
    assert response_format["json_schema"]["schema"]["required"] == ["mood", "score", "note"]

    ((_, record),) = call_log.records
    assert record == LLMCallRecord(
        user_id="user-1",
        job_id="job-1",
        agent="probe",
        model="test-model",
        endpoint=server.base_url,
        prompt_name="probe",
        prompt_version="0123456789ab",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=answer.usage.prompt_tokens,
        completion_tokens=answer.usage.completion_tokens,
        latency_ms=record.latency_ms,
        outcome=CallOutcome.OK,
        error=None,
    )


async def test_invalid_json_is_repaired_once(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.text('{"mood": "good", '), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)

    first, repair = server.chat_requests
    assert repair.messages[:2] == first.messages
    assert repair.messages[2] == {"role": "assistant", "content": '{"mood": "good", '}
    assert repair.messages[3]["role"] == "user"
    assert "not valid JSON" in repair.messages[3]["content"]
    assert "<validation_errors>" in repair.messages[3]["content"]
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.INVALID_JSON), (CallPurpose.REPAIR, CallOutcome.OK)]
    assert "not valid JSON" in (call_log.records[0][1].error or "")


async def test_schema_violation_twice_is_permanent(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(
        ScriptedReply.json({"mood": "great", "score": 7, "note": None}),
        ScriptedReply.json({"mood": "good", "score": 11, "note": None}),
    )
    with pytest.raises(PermanentError, match=r"still unusable after a repair request.*score") as caught:
        await ask(client)
    assert "probe@0123456789ab" in str(caught.value)
    _, repair = server.chat_requests
    assert "mood: Input should be 'good' or 'bad'" in repair.messages[-1]["content"]
    assert outcomes(call_log) == [
        (CallPurpose.ANSWER, CallOutcome.SCHEMA_INVALID),
        (CallPurpose.REPAIR, CallOutcome.SCHEMA_INVALID),
    ]
    assert server.pending_replies == 0


async def test_agent_check_failures_go_into_the_repair(server: ScriptedLLMServer, client: LLMClient) -> None:
    server.enqueue(ScriptedReply.json({**GOOD, "score": 3}), ScriptedReply.json(GOOD))

    def check(verdict: Verdict) -> list[str]:
        return [] if verdict.score > 5 else [f"score: {verdict.score} is too low for a good mood"]

    assert (await ask(client, check=check)).score == 7
    assert "score: 3 is too low for a good mood" in server.chat_requests[1].messages[-1]["content"]


async def test_code_fences_are_tolerated(server: ScriptedLLMServer, client: LLMClient) -> None:
    server.enqueue(ScriptedReply.text(f"```json\n{json.dumps(GOOD)}\n```"))
    assert await ask(client) == Verdict(**GOOD)


async def test_truncated_answer_is_repaired(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.text('{"mood": "go', finish_reason="length"), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)
    assert "cut off" in server.chat_requests[1].messages[-1]["content"]
    assert outcomes(call_log)[0] == (CallPurpose.ANSWER, CallOutcome.TRUNCATED)


async def test_rate_limit_honours_retry_after(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.error(429, "Rate limit reached", retry_after="0.3"), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)
    first, second = server.chat_requests
    assert second.received_at - first.received_at >= 0.3  # the backoff alone would be ~0.01 s
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.RATE_LIMITED), (CallPurpose.ANSWER, CallOutcome.OK)]
    assert [record.attempt for _, record in call_log.records] == [1, 2]
    assert "429" in (call_log.records[0][1].error or "")


async def test_retry_after_longer_than_we_wait_hands_back_to_the_job_runtime(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    server.enqueue(ScriptedReply.error(429, "Rate limit reached", retry_after="3600"), ScriptedReply.json(GOOD))
    started = time.monotonic()
    with pytest.raises(TransientError, match="retry after 3600s"):
        await ask(client)
    assert time.monotonic() - started < 1
    assert len(server.chat_requests) == 1


async def test_server_error_is_retried(server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog) -> None:
    server.enqueue(ScriptedReply.error(500, "boom"), ScriptedReply.error(503, "overloaded"), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)
    assert [outcome for _, outcome in outcomes(call_log)] == [
        CallOutcome.SERVER_ERROR,
        CallOutcome.SERVER_ERROR,
        CallOutcome.OK,
    ]


async def test_a_200_that_is_not_a_completion_is_retried_like_a_server_error(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.garbled('{"detail": "upstream reset"}'), ScriptedReply.json(GOOD))
    assert await ask(client) == Verdict(**GOOD)
    records = [record for _, record in call_log.records]
    assert [r.outcome for r in records] == [CallOutcome.SERVER_ERROR, CallOutcome.OK]
    assert records[0].error is not None and "not a chat completion" in records[0].error


async def test_persistent_server_errors_become_transient(server: ScriptedLLMServer, make_client: ClientFactory) -> None:
    client = make_client(max_retries=1)
    server.enqueue(*[ScriptedReply.error(502, "bad gateway")] * 3)
    with pytest.raises(TransientError, match=r"still failing after 2 attempts \(server_error\).*will be retried"):
        await ask(client)
    assert len(server.chat_requests) == 2


async def test_timeout_is_retried(
    server: ScriptedLLMServer, make_client: ClientFactory, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.slow(1.0, then=ScriptedReply.json(GOOD)), ScriptedReply.json(GOOD))
    assert await ask(make_client(timeout_s=SHORT_TIMEOUT_S)) == Verdict(**GOOD)
    assert [outcome for _, outcome in outcomes(call_log)] == [CallOutcome.TIMEOUT, CallOutcome.OK]
    assert call_log.records[0][1].latency_ms >= 250  # the client waited for its 0.3 s timeout


async def test_persistent_timeout_is_transient(server: ScriptedLLMServer, make_client: ClientFactory) -> None:
    client = make_client(timeout_s=0.2, max_retries=1)
    server.enqueue(*[ScriptedReply.slow(1.0)] * 2)
    with pytest.raises(TransientError, match=r"after 2 attempts \(timeout\)"):
        await ask(client)
    assert len(server.chat_requests) == 2


async def test_connection_refused_is_transient(make_client: ClientFactory, call_log: InMemoryCallLog) -> None:
    with ScriptedLLMServer() as gone:
        url = gone.base_url
    client = make_client(base_url=url, max_retries=0)
    with pytest.raises(TransientError, match="connection_error"):
        await ask(client)
    assert outcomes(call_log) == [(CallPurpose.ANSWER, CallOutcome.CONNECTION_ERROR)]


@pytest.mark.parametrize(
    ("status", "message", "code", "outcome", "hint"),
    [
        (401, "Incorrect API key provided", None, CallOutcome.AUTH_ERROR, "OPENAI_API_KEY"),
        (404, "The model `nope` does not exist", "model_not_found", CallOutcome.NOT_FOUND, "ORRERY_INGESTION_MODEL"),
        (429, "You exceeded your current quota", "insufficient_quota", CallOutcome.QUOTA_EXCEEDED, "quota"),
        (400, "maximum context length is 8192 tokens", "context_length_exceeded", CallOutcome.BAD_REQUEST, "rejected"),
    ],
)
async def test_errors_retrying_cannot_fix_are_permanent_at_once(
    server: ScriptedLLMServer,
    client: LLMClient,
    call_log: InMemoryCallLog,
    status: int,
    message: str,
    code: str | None,
    outcome: CallOutcome,
    hint: str,
) -> None:
    server.enqueue(ScriptedReply.error(status, message, code=code), ScriptedReply.json(GOOD))
    with pytest.raises(PermanentError, match=hint):
        await ask(client)
    assert len(server.chat_requests) == 1
    assert outcomes(call_log) == [(CallPurpose.ANSWER, outcome)]


async def test_json_schema_unsupported_falls_back_to_json_mode_and_is_remembered(
    server: ScriptedLLMServer, make_client: ClientFactory, call_log: InMemoryCallLog
) -> None:
    server.supports_json_schema = False
    server.enqueue(ScriptedReply.json(GOOD), ScriptedReply.json(GOOD))
    assert await ask(make_client()) == Verdict(**GOOD)

    rejected, fallback = server.chat_requests
    assert rejected.response_format is not None and rejected.response_format["type"] == "json_schema"
    assert fallback.response_format == {"type": "json_object"}
    system = fallback.messages[0]["content"]
    assert system.startswith("You judge moods.")
    assert "<json_schema>" in system and '"mood"' in system and "JSON" in system
    assert [(r.response_format, r.outcome) for _, r in call_log.records] == [
        (ResponseFormatMode.JSON_SCHEMA, CallOutcome.UNSUPPORTED_FORMAT),
        (ResponseFormatMode.JSON_OBJECT, CallOutcome.OK),
    ]

    assert await ask(make_client()) == Verdict(**GOOD)  # a new client for the same base URL: no second 400
    assert server.chat_requests[2].response_format == {"type": "json_object"}


async def test_no_response_format_at_all_falls_back_to_instructions(
    server: ScriptedLLMServer, client: LLMClient
) -> None:
    server.supports_json_schema = False
    server.enqueue(
        ScriptedReply.error(400, "Unknown parameter: 'response_format'"), ScriptedReply.text(json.dumps(GOOD))
    )
    assert await ask(client) == Verdict(**GOOD)
    formats = [request.response_format for request in server.chat_requests]
    assert [f and f["type"] for f in formats] == ["json_schema", "json_object", None]
    assert "<json_schema>" in server.chat_requests[2].messages[0]["content"]


async def test_over_budget_is_deferred_to_next_utc_midnight(
    server: ScriptedLLMServer, make_client: ClientFactory, call_log: InMemoryCallLog
) -> None:
    now = datetime(2026, 3, 14, 21, 30, tzinfo=UTC)
    call_log.clock = lambda: now
    client = make_client(daily_token_budget=1000, clock=lambda: now)
    server.enqueue(ScriptedReply.json(GOOD), ScriptedReply.json(GOOD))
    await call_log.record(_spent(CONTEXT.user_id, 995))
    await call_log.record(_spent("someone-else", 5000))
    assert await ask(client) == Verdict(**GOOD)  # 995 < 1000: allowed, and this call pushes the user over

    with pytest.raises(DeferredError, match=r"user-1 has used \d+ LLM tokens today.*budget of 1000") as caught:
        await ask(client)
    assert caught.value.until == datetime(2026, 3, 15, tzinfo=UTC)
    assert len(server.chat_requests) == 1

    call_log.records[:] = [(now - timedelta(hours=22), record) for _, record in call_log.records]  # yesterday's
    assert await ask(client) == Verdict(**GOOD)


def test_next_utc_midnight() -> None:
    lisbon_evening = datetime.fromisoformat("2026-06-30T23:30:00+01:00")  # 22:30 UTC
    assert next_utc_midnight(lisbon_evening) == datetime(2026, 7, 1, tzinfo=UTC)
    assert next_utc_midnight(datetime(2026, 12, 31, 0, 0, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


def assert_strict_mode_compatible(node: Any) -> None:
    """OpenAI's strict mode: every object closed, every property required, no defaults, no $ref with siblings."""
    if isinstance(node, dict):
        assert "default" not in node
        assert not ("$ref" in node and len(node) > 1), node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])
        for key, value in node.items():
            if key in ("properties", "$defs"):  # names, not schemas: a property may be called "default"
                for schema in value.values():
                    assert_strict_mode_compatible(schema)
            else:
                assert_strict_mode_compatible(value)
    elif isinstance(node, list):
        for item in node:
            assert_strict_mode_compatible(item)


def test_schema_is_strict_mode_compatible() -> None:
    class Loose(BaseModel):
        verdict: Verdict = Field(description="the verdict")
        tags: list[str] = []

    schema = strict_json_schema(Loose)
    assert_strict_mode_compatible(schema)
    verdict = schema["properties"]["verdict"]
    assert verdict["description"] == "the verdict"  # a field's description stays, the model's titles do not
    assert verdict["properties"]["mood"] == {"enum": ["good", "bad"], "type": "string"}
    assert verdict["properties"]["score"] == {"maximum": 10, "minimum": 1, "type": "integer"}
    assert verdict["properties"]["note"] == {"type": ["string", "null"]}
    assert "$defs" not in schema and "title" not in schema


def test_the_schema_keeps_a_definition_used_twice_and_properties_named_like_keywords() -> None:
    """A model used in two places stays one definition (inlining it would say it twice); properties named "title",
    "default" or "description" are properties, not the annotations that are left out; a nullable enum stays anyOf."""

    class Pair(BaseModel):
        """A docstring is for us, not for the model."""

        title: str
        default: Literal["a", "b"] | None
        description: str = Field(description="What it is")
        first: Verdict
        second: Verdict | None

    schema = strict_json_schema(Pair)
    assert_strict_mode_compatible(schema)
    assert "description" not in schema and "description" not in schema["$defs"]["Verdict"]
    assert list(schema["properties"]) == ["title", "default", "description", "first", "second"]
    assert schema["properties"]["title"] == {"type": "string"}
    assert schema["properties"]["default"] == {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}
    assert schema["properties"]["description"] == {"description": "What it is", "type": "string"}
    assert schema["properties"]["first"] == {"$ref": "#/$defs/Verdict"}
    assert schema["properties"]["second"] == {"anyOf": [{"$ref": "#/$defs/Verdict"}, {"type": "null"}]}
    assert list(schema["$defs"]) == ["Verdict"]


async def test_models_endpoint_speaks_openai(server: ScriptedLLMServer, client: LLMClient) -> None:
    models = await client._client.models.list()
    assert [model.id for model in models.data] == ["scripted"]


def _spent(user_id: str, tokens: int) -> LLMCallRecord:
    return LLMCallRecord(
        user_id=user_id,
        job_id=None,
        agent="probe",
        model="m",
        endpoint="http://127.0.0.1",
        prompt_name="probe",
        prompt_version="0123456789ab",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=tokens,
        completion_tokens=0,
        latency_ms=1,
        outcome=CallOutcome.OK,
        error=None,
    )


async def test_the_scripted_sample_server_only_by_name() -> None:
    """Issue 21: with no key and no base URL the client used to answer from the samples, silently."""
    nothing = load_settings(openai_api_key=None, openai_base_url=None, llm=None)
    with pytest.raises(PermanentError, match="no LLM is configured: set OPENAI_API_KEY"):
        async with open_llm_client(nothing, InMemoryCallLog()):
            pass
    settings = load_settings(openai_api_key=None, openai_base_url=None, llm="scripted")
    assert settings.llm_is_scripted
    async with open_llm_client(settings, InMemoryCallLog()) as client:
        assert client.scripted
        assert client.base_url.startswith("http://127.0.0.1:")
        models = await client._client.models.list()
        assert [model.id for model in models.data] == ["scripted"]


async def test_open_llm_client_follows_the_settings(server: ScriptedLLMServer, call_log: InMemoryCallLog) -> None:
    settings = load_settings(
        openai_api_key=None,
        openai_base_url=server.base_url,
        llm_timeout_s=0.2,
        llm_max_retries=0,
        daily_token_budget=0,
    )
    server.enqueue(ScriptedReply.slow(1.0))
    async with open_llm_client(settings, call_log) as client:
        assert not client.scripted and client.base_url == server.base_url
        with pytest.raises(TransientError, match=r"after 1 attempt \(timeout\)"):  # the settings' timeout and retries
            await ask(client)
    assert server.chat_requests[0].headers["authorization"] == "Bearer not-needed"
