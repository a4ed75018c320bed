"""Speech to text through an OpenAI-compatible `/audio/transcriptions` endpoint (the openai client's audio API), with
the chat client's retry policy and a record of every attempt.

Why here, beside the chat client: a transcription is a paid model call like any other, so it is written to the call
log (runtime.llm_calls: the prompt that guided it, `prompt_only` as its response format, the tokens the server
reports) and counts toward the user's daily token budget, which is checked before the call. A server that reports
no token usage (whisper-1 reports seconds) is recorded with the transcript's estimated tokens as its completion.
LLMClient.transcribe is the entry point: it shares the client's connection, endpoint and settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI

from agents.llm.policy import Failure, classify, retry_delay, short
from agents.llm.port import CallContext
from agents.llm.wire import MAX_RECORDED_TOKENS, estimate_tokens
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, LLMUsage, ResponseFormatMode
from prompts import RenderedPrompt

log = structlog.get_logger(__name__)

_OPERATOR_HINT = {
    CallOutcome.AUTH_ERROR: "check OPENAI_API_KEY",
    CallOutcome.NOT_FOUND: "check OPENAI_BASE_URL (it must serve /audio/transcriptions) and "
    "ORRERY_MEDIA_TRANSCRIPTION_MODEL",
    CallOutcome.QUOTA_EXCEEDED: "the account's quota is used up; add credit, then retrigger the job",
}


@dataclass(frozen=True)
class Transcript:
    """What was said, and what it cost (every attempt)."""

    text: str
    usage: LLMUsage


@dataclass(frozen=True)
class AudioFile:
    data: bytes
    filename: str
    content_type: str


async def transcribe_audio(
    client: AsyncOpenAI,
    record: Callable[[LLMCallRecord], Awaitable[None]],
    audio: AudioFile,
    *,
    endpoint: str,
    prompt: RenderedPrompt,
    model: str,
    context: CallContext,
    max_retries: int,
    backoff: tuple[float, float],
    language: str | None = None,
) -> Transcript:
    """One transcript; transient failures retried (then TransientError), the others a PermanentError naming the
    setting to check. `prompt.user` goes to the endpoint as its `prompt` (the context that guides the model);
    `language`, an ISO 639-1 code, as its `language` (the audio's language, which improves accuracy and latency;
    omitted when unknown, and the endpoint detects it)."""
    usage = LLMUsage()
    attempt = 0
    where = f"{context.agent}: transcription at {endpoint} (model {model})"

    async def write(outcome: CallOutcome, error: str | None, started: float, prompt_tokens: int, done: int) -> None:
        await record(
            LLMCallRecord(
                user_id=context.user_id,
                job_id=context.job_id,
                agent=context.agent,
                model=model,
                endpoint=endpoint,
                prompt_name=prompt.name,
                prompt_version=prompt.version,
                purpose=CallPurpose.ANSWER,
                response_format=ResponseFormatMode.PROMPT_ONLY,
                attempt=attempt,
                prompt_tokens=prompt_tokens,
                completion_tokens=done,
                latency_ms=int((time.perf_counter() - started) * 1000),
                outcome=outcome,
                error=short(error) if error else None,
            )
        )

    while True:
        attempt += 1
        started = time.perf_counter()
        try:
            response = await client.audio.transcriptions.create(
                model=model,
                file=(audio.filename, audio.data, audio.content_type),
                prompt=prompt.user,
                language=language if language is not None else openai.omit,
                response_format="json",
                extra_headers=prompt.headers(),
            )
        except openai.APIError as exc:
            failure = classify(exc)
            await write(failure.outcome, failure.detail, started, 0, 0)
            usage += LLMUsage(1, 0, 0)
            await _wait_or_raise(failure, attempt - 1, where, max_retries, backoff, context)
            continue
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # the cancellation is what must propagate
                detail = "the call was cancelled while waiting for the transcript (the job timed out or was stopped)"
                await write(CallOutcome.CANCELLED, detail, started, 0, 0)
            raise
        text = getattr(response, "text", None)
        if not isinstance(text, str):
            failure = Failure(CallOutcome.SERVER_ERROR, True, "the server's 200 response holds no transcript text")
            await write(failure.outcome, failure.detail, started, 0, 0)
            usage += LLMUsage(1, 0, 0)
            await _wait_or_raise(failure, attempt - 1, where, max_retries, backoff, context)
            continue
        prompt_tokens, completion_tokens = _tokens(getattr(response, "usage", None), text)
        await write(CallOutcome.OK, None, started, prompt_tokens, completion_tokens)
        return Transcript(text, usage + LLMUsage(1, prompt_tokens, completion_tokens))


def _tokens(usage: Any, text: str) -> tuple[int, int]:
    """(input, output) tokens as the server reports them (`usage.type == "tokens"`), else (0, the transcript's
    estimate)."""
    if getattr(usage, "type", None) == "tokens":
        given, made = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
        if isinstance(given, int) and isinstance(made, int) and given >= 0 and made >= 0:
            return min(given, MAX_RECORDED_TOKENS), min(made, MAX_RECORDED_TOKENS)
    return 0, estimate_tokens(text)


async def _wait_or_raise(
    failure: Failure,
    retries: int,
    where: str,
    max_retries: int,
    backoff: tuple[float, float],
    context: CallContext,
) -> None:
    delay = retry_delay(
        failure,
        retries,
        where,
        max_retries=max_retries,
        backoff=backoff,
        hints=_OPERATOR_HINT,
        hint="see the error, fix the configuration, retrigger",
    )
    log.info("transcription.retry", agent=context.agent, outcome=failure.outcome.value, delay_s=round(delay, 3))
    await asyncio.sleep(delay)
