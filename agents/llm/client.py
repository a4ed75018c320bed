"""LLMClient: the StructuredLLM port over the official `openai` client, one OpenAI-compatible endpoint per client.

One request loop: the answer asked for in the strongest response format the server takes (wire.py), transient
failures retried by the one policy (policy.py), the answer judged and repaired at most once (answers.py), and every
HTTP attempt written to the call log however it ends (call_log.py), cancelled ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient
from pydantic import BaseModel, ValidationError

from agents.llm.answers import judge, repair_messages
from agents.llm.call_log import check_budget, write_record
from agents.llm.policy import Failure, classify, retry_delay, short, unreadable
from agents.llm.port import CallContext, StructuredAnswer
from agents.llm.transcription import AudioFile, Transcript, transcribe_audio
from agents.llm.wire import (
    CHAT_COMPLETIONS,
    RESPONSE_FORMAT_SUPPORT,
    Reply,
    ResponseFormatSupport,
    message_tokens,
    public_endpoint,
    read_completion,
    request_body,
    strict_json_schema,
)
from core.errors import PermanentError
from core.llm_records import CallLog, CallOutcome, CallPurpose, LLMCallRecord, LLMUsage, ResponseFormatMode
from prompts import RenderedPrompt
from settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=BaseModel)

OPENAI_BASE_URL = "https://api.openai.com/v1"

_OPERATOR_HINT = {
    CallOutcome.AUTH_ERROR: "check OPENAI_API_KEY",
    CallOutcome.NOT_FOUND: "check OPENAI_BASE_URL and the model setting (e.g. ORRERY_INGESTION_MODEL)",
    CallOutcome.QUOTA_EXCEEDED: "the account's quota is used up; add credit, then retrigger the job",
    CallOutcome.BAD_REQUEST: "the server rejected the request; see the error, fix the configuration, retrigger",
    CallOutcome.UNSUPPORTED_FORMAT: "the server supports no JSON output mode at all",
}


class LLMClient:
    """Structured chat completions against one OpenAI-compatible endpoint (see the package docstring)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        call_log: CallLog,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        daily_token_budget: int = 0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        strict_schema: bool = True,
        format_support: ResponseFormatSupport = RESPONSE_FORMAT_SUPPORT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scripted: bool = False,
    ) -> None:
        self.scripted = scripted  # answers come from the scripted sample server: output must say so
        self.base_url = base_url.rstrip("/")
        self.endpoint = public_endpoint(self.base_url)
        # aiohttp instead of the default httpx transport: the openai package's documented option for async use, and
        # 25% less CPU per call here (bench/bench_ingest.py); retries stay ours (max_retries=0)
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=DefaultAioHttpClient(timeout=timeout_s),
        )
        self._call_log = call_log
        self._max_retries = max_retries
        self._budget = daily_token_budget
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._strict = strict_schema
        self._formats = format_support
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        call_log: CallLog,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        **overrides: Any,
    ) -> LLMClient:
        """The client the settings describe; base_url/api_key override them (the demo's scripted server)."""
        key = api_key or (settings.openai_api_key.get_secret_value() if settings.openai_api_key else None)
        return cls(
            base_url=base_url or settings.openai_base_url or OPENAI_BASE_URL,
            api_key=key or "not-needed",  # local servers ignore the key, but the openai client insists on one
            call_log=call_log,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            daily_token_budget=settings.daily_token_budget,
            **overrides,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def complete(
        self,
        prompt: RenderedPrompt,
        output_type: type[T],
        *,
        model: str,
        context: CallContext,
        check: Callable[[T], Sequence[str]] | None = None,
    ) -> StructuredAnswer[T]:
        """One validated answer of type `output_type`.

        Raises DeferredError when the user's daily token budget is spent, TransientError when the endpoint keeps
        failing in a way that may pass, and PermanentError when retrying cannot help (bad key, unknown model, or an
        answer that is still invalid after one repair request).
        """
        await check_budget(self._call_log, self._budget, context, self._clock())
        schema = strict_json_schema(output_type)
        messages: list[dict[str, Any]] = prompt.messages()
        usage = LLMUsage()
        purpose = CallPurpose.ANSWER
        while True:
            reply, spent = await self._request(messages, schema, output_type.__name__, model, prompt, purpose, context)
            usage += spent
            judgement = judge(reply, output_type, check)
            await self._record(
                context,
                model,
                prompt,
                purpose,
                reply.mode,
                reply.attempt,
                judgement.outcome,
                "; ".join(judgement.errors) or None,
                reply.latency_ms,
                reply.prompt_tokens,
                reply.completion_tokens,
                cached_tokens=reply.cached_tokens,
            )
            if judgement.value is not None:
                assert isinstance(judgement.value, output_type)
                return StructuredAnswer(judgement.value, usage)
            if judgement.crash is not None:
                log.error("llm.check_failed", agent=context.agent, job_id=context.job_id, exc_info=judgement.crash)
                raise PermanentError(
                    f"{context.agent}: checking the model's answer raised instead of returning problems "
                    f"({short('; '.join(judgement.errors))}); a defect in the agent, so the answer was neither used "
                    f"nor sent back for repair (the call is in runtime.llm_calls as check_failed); "
                    f"model {model} at {self.endpoint}, prompt {prompt.name}@{prompt.version}"
                )
            if purpose is CallPurpose.REPAIR:
                raise PermanentError(
                    f"{context.agent}: the model's answer was still unusable after a repair request "
                    f"({judgement.outcome.value}: {short('; '.join(judgement.errors))}); "
                    f"model {model} at {self.endpoint}, prompt {prompt.name}@{prompt.version}"
                )
            log.warning(
                "llm.answer_invalid",
                agent=context.agent,
                job_id=context.job_id,
                outcome=judgement.outcome.value,
                errors=[short(error) for error in judgement.errors[:5]],
            )
            messages = [*messages, *repair_messages(reply.content or "", judgement.errors)]
            purpose = CallPurpose.REPAIR

    async def transcribe(
        self,
        audio: AudioFile,
        *,
        prompt: RenderedPrompt,
        model: str,
        context: CallContext,
        language: str | None = None,
    ) -> Transcript:
        """What is said in `audio`, from the endpoint's /audio/transcriptions (agents/llm/transcription.py): the
        user's budget checked first, every attempt recorded, the same retries as a chat call; `language` (ISO 639-1)
        is the endpoint's hint of what the audio is in."""
        await check_budget(self._call_log, self._budget, context, self._clock())
        return await transcribe_audio(
            self._client,
            lambda record: write_record(self._call_log, record),
            audio,
            endpoint=self.endpoint,
            prompt=prompt,
            model=model,
            context=context,
            language=language,
            max_retries=self._max_retries,
            backoff=(self._backoff_initial_s, self._backoff_max_s),
        )

    async def _request(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any],
        schema_name: str,
        model: str,
        prompt: RenderedPrompt,
        purpose: CallPurpose,
        context: CallContext,
    ) -> tuple[Reply, LLMUsage]:
        """One logical request: transient failures retried with backoff, format downgrades on an unsupported 400."""
        usage = LLMUsage()
        attempt = 0
        retries = 0
        sent_tokens = sum(message_tokens(m) for m in messages)
        while True:
            attempt += 1
            mode = self._formats.mode_for(self.base_url)
            started = time.perf_counter()
            try:
                raw = await self._client.post(
                    CHAT_COMPLETIONS,
                    cast_to=httpx2.Response,
                    body=request_body(model, messages, mode, schema, schema_name, strict=self._strict),
                    options={"headers": prompt.headers()},
                )
                completion = read_completion(raw.content)
            except (openai.APIError, ValidationError) as exc:
                latency_ms = int((time.perf_counter() - started) * 1000)
                failure = classify(exc) if isinstance(exc, openai.APIError) else unreadable(exc)
                tokens = sent_tokens if failure.reached else 0
                usage += LLMUsage(1, tokens, 0)
                await self._record(
                    context,
                    model,
                    prompt,
                    purpose,
                    mode,
                    attempt,
                    failure.outcome,
                    failure.detail,
                    latency_ms,
                    tokens,
                    0,
                )
                await self._after_failure(failure, mode, retries, context, model)
                if failure.outcome is not CallOutcome.UNSUPPORTED_FORMAT:
                    retries += 1
                continue
            except asyncio.CancelledError:  # the job's timeout or a shutdown, while the model may be working on it
                latency_ms = int((time.perf_counter() - started) * 1000)
                detail = "the call was cancelled while waiting for the answer (the job timed out or was stopped)"
                with contextlib.suppress(Exception):  # the cancellation is what must propagate
                    await self._record(
                        context,
                        model,
                        prompt,
                        purpose,
                        mode,
                        attempt,
                        CallOutcome.CANCELLED,
                        detail,
                        latency_ms,
                        sent_tokens,
                        0,
                    )
                raise
            latency_ms = int((time.perf_counter() - started) * 1000)
            reply = Reply.of(completion, sent_tokens=sent_tokens, latency_ms=latency_ms, mode=mode, attempt=attempt)
            usage += LLMUsage(1, reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens)
            return reply, usage

    async def _after_failure(
        self, failure: Failure, mode: ResponseFormatMode, retries: int, context: CallContext, model: str
    ) -> None:
        """Return to try again (after sleeping when due), or raise the job-level error."""
        where = f"{context.agent}: LLM call to {self.endpoint} (model {model})"
        if failure.outcome is CallOutcome.UNSUPPORTED_FORMAT:
            weaker = self._formats.downgrade(self.base_url, mode)
            if weaker is not None:
                log.warning(
                    "llm.response_format_unsupported",
                    endpoint=self.endpoint,
                    rejected=mode.value,
                    next=weaker.value,
                    detail=short(failure.detail),
                )
                return
        delay = retry_delay(
            failure,
            retries,
            where,
            max_retries=self._max_retries,
            backoff=(self._backoff_initial_s, self._backoff_max_s),
            hints=_OPERATOR_HINT,
            hint="see the error",
        )
        log.info(
            "llm.retry",
            agent=context.agent,
            job_id=context.job_id,
            outcome=failure.outcome.value,
            delay_s=round(delay, 3),
            retry=retries + 1,
        )
        await asyncio.sleep(delay)

    async def _record(
        self,
        context: CallContext,
        model: str,
        prompt: RenderedPrompt,
        purpose: CallPurpose,
        mode: ResponseFormatMode,
        attempt: int,
        outcome: CallOutcome,
        error: str | None,
        latency_ms: int,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached_tokens: int = 0,
    ) -> None:
        record = LLMCallRecord(
            user_id=context.user_id,
            job_id=context.job_id,
            agent=context.agent,
            model=model,
            endpoint=self.endpoint,
            prompt_name=prompt.name,
            prompt_version=prompt.version,
            purpose=purpose,
            response_format=mode,
            attempt=attempt,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            outcome=outcome,
            error=short(error) if error else None,
            cached_tokens=cached_tokens,
        )
        await write_record(self._call_log, record)


@asynccontextmanager
async def open_llm_client(settings: Settings, call_log: CallLog, **overrides: Any) -> AsyncIterator[LLMClient]:
    """The client the settings describe, closed on exit.

    With ORRERY_LLM=scripted (`settings.llm_is_scripted`; the demo and the tests), it talks to a scripted server on
    127.0.0.1 that answers the sample user's conversations from agents/samples/, and `client.scripted` is True so
    the caller labels what it shows. With no LLM configured at all it refuses (PermanentError, the one line of
    `settings.llm_problem()`) rather than send requests to api.openai.com without a key.
    """
    problem = settings.llm_problem()
    if problem is not None:
        raise PermanentError(problem)
    if not settings.llm_is_scripted:
        async with LLMClient.from_settings(settings, call_log, **overrides) as client:
            yield client
        return
    from agents.scripted_llm import sample_answers_server  # only needed without a real endpoint

    with sample_answers_server() as server:
        async with LLMClient.from_settings(
            settings, call_log, base_url=server.base_url, api_key="scripted", scripted=True, **overrides
        ) as client:
            yield client
