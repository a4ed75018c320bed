"""Structured output from any OpenAI-compatible chat endpoint, with one retry policy and a record of every call.

Why this shape:
- One client (the official `openai` package) with a configurable base URL serves OpenAI and the local servers
  (vLLM, Ollama, llama.cpp, LM Studio). Servers differ in how they constrain output, so the client asks for a strict
  JSON schema first and, when a server answers that it cannot do that, falls back to JSON mode and then to plain
  instructions — remembered per base URL, so the 400 is paid once per process.
- The answer is untrusted data: parsed, validated with pydantic plus an agent-supplied check (e.g. "only handles
  you were shown"), and repaired at most once by sending the validation errors back. A second bad answer is a
  PermanentError: the job runtime dead-letters it rather than burning tokens.
- Retries live here and only here (the openai client runs with max_retries=0): 429/5xx/timeouts/connection errors are
  retried with exponential backoff and jitter, honouring Retry-After; when they keep failing the error becomes a
  TransientError and the job runtime retries the whole job later.
- Every HTTP attempt, failed or not, is written through a CallLog port (runtime.llm_calls in production), which is
  also what the per-user daily token budget is summed from.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient
from pydantic import BaseModel, ValidationError

from core.backoff import equal_jitter
from core.errors import BudgetExceededError, PermanentError, TransientError
from core.llm_records import CallLog, CallOutcome, CallPurpose, LLMCallRecord, LLMUsage, ResponseFormatMode
from core.validation import error_lines
from prompts import RenderedPrompt, load_prompt
from settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=BaseModel)

OPENAI_BASE_URL = "https://api.openai.com/v1"
CHAT_COMPLETIONS = "/chat/completions"
MAX_ERRORS_IN_REPAIR = 20
MAX_ERROR_TEXT = 500


_MODE_ORDER = list(ResponseFormatMode)


@dataclass(frozen=True)
class CallContext:
    """Who a call is for: the budget is per user, and every recorded call names its agent and job."""

    user_id: str
    agent: str
    job_id: str | None = None


@dataclass
class InMemoryCallLog:
    """A CallLog for benchmarks and scripted runs without a database; keeps records in a list."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    records: list[tuple[datetime, LLMCallRecord]] = field(default_factory=list)

    async def record(self, call: LLMCallRecord) -> None:
        self.records.append((self.clock(), call))

    async def tokens_used(self, user_id: str, since: datetime) -> int:
        return sum(
            r.prompt_tokens + r.completion_tokens for at, r in self.records if r.user_id == user_id and at >= since
        )


@dataclass(frozen=True)
class StructuredAnswer(Generic[T]):
    """A validated answer and what it cost (all attempts, including retries and the repair)."""

    value: T
    usage: LLMUsage


class StructuredLLM(Protocol):
    """The port agents depend on; LLMClient is the implementation."""

    async def complete(
        self,
        prompt: RenderedPrompt,
        output_type: type[T],
        *,
        model: str,
        context: CallContext,
        check: Callable[[T], Sequence[str]] | None = None,
    ) -> StructuredAnswer[T]: ...


class ResponseFormatSupport:
    """The strongest response format each base URL accepts, learnt from its 400s and shared by every client."""

    def __init__(self) -> None:
        self._modes: dict[str, ResponseFormatMode] = {}

    def mode_for(self, base_url: str) -> ResponseFormatMode:
        return self._modes.get(base_url, ResponseFormatMode.JSON_SCHEMA)

    def downgrade(self, base_url: str, rejected: ResponseFormatMode) -> ResponseFormatMode | None:
        """Remember that `rejected` does not work there; the next mode to try, or None when none is left."""
        index = _MODE_ORDER.index(rejected)
        if index + 1 >= len(_MODE_ORDER):
            return None
        weaker = _MODE_ORDER[index + 1]
        if _MODE_ORDER.index(self.mode_for(base_url)) < index + 1:
            self._modes[base_url] = weaker
        return self.mode_for(base_url)


RESPONSE_FORMAT_SUPPORT = ResponseFormatSupport()
"""Process-wide: one server's capabilities do not change between jobs."""


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token), for windowing and for servers that report no usage."""
    return math.ceil(len(text) / 4)


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


@functools.cache
def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the subset OpenAI's strict structured outputs accept.

    Every object lists all its properties as required and forbids others; `default`s are dropped (strict mode has no
    optional properties: optional fields are nullable instead) and a `$ref` with sibling keywords is inlined.
    Built once per model (pydantic's schema generation costs ~12 ms, more than the rest of an ingestion's CPU) and
    shared by every call: read it, never change it.
    """
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.get("$defs", {})

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: value for key, value in node.items() if key != "default"}
        ref = node.get("$ref")
        if isinstance(ref, str) and len(node) > 1:
            target = definitions[ref.rsplit("/", 1)[-1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        return {key: visit(value) for key, value in node.items()}

    result: dict[str, Any] = visit(schema)
    return result


def _public_endpoint(base_url: str) -> str:
    """The base URL without credentials or query string, safe to store."""
    parts = urlsplit(base_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


def _strip_code_fence(text: str) -> str:
    """Local models in plain-instruction mode often wrap JSON in ```json fences; the JSON inside is what counts."""
    match = _FENCE.match(text)
    return match.group("body") if match else text.strip()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds (OpenAI's retry-after-ms first, then seconds or an HTTP date), or None."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class _Failure:
    outcome: CallOutcome
    transient: bool
    detail: str
    retry_after: float | None = None


_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured output", "response format")


def _connect_failure(exc: BaseException) -> OSError | None:
    """The socket error behind `exc` when the connection itself failed (refused, unreachable, no such host).

    Why look: the aiohttp transport reports a refused connection as a connect *timeout*, and "timeout" in
    runtime.llm_calls would send an operator looking at a slow model instead of a server that is down.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and not isinstance(link, TimeoutError):
            return link
        link = link.__cause__ or link.__context__
    return None


def _classify(exc: openai.APIError) -> _Failure:
    """Map an openai exception onto an outcome and whether retrying can help."""
    refused = _connect_failure(exc)
    if isinstance(exc, openai.APITimeoutError) and refused is None:
        return _Failure(CallOutcome.TIMEOUT, True, "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = refused or exc.__cause__ or exc
        return _Failure(CallOutcome.CONNECTION_ERROR, True, f"cannot connect: {type(cause).__name__}: {cause}")
    if not isinstance(exc, openai.APIStatusError):
        return _Failure(CallOutcome.BAD_REQUEST, False, str(exc))
    status = exc.status_code
    body = json.dumps(exc.body) if exc.body is not None else ""
    detail = f"HTTP {status}: {exc.message}"
    retry_after = _retry_after_seconds(exc.response.headers)
    if status == 429:
        if "insufficient_quota" in body or "insufficient_quota" in exc.message:
            return _Failure(CallOutcome.QUOTA_EXCEEDED, False, detail)
        return _Failure(CallOutcome.RATE_LIMITED, True, detail, retry_after)
    if status in (400, 422) and any(word in f"{exc.message} {body}".lower() for word in _FORMAT_WORDS):
        return _Failure(CallOutcome.UNSUPPORTED_FORMAT, False, detail)
    if status in (401, 403):
        return _Failure(CallOutcome.AUTH_ERROR, False, detail)
    if status == 404:
        return _Failure(CallOutcome.NOT_FOUND, False, detail)
    if status == 408:
        return _Failure(CallOutcome.TIMEOUT, True, detail, retry_after)
    if status == 409 or status >= 500:
        return _Failure(CallOutcome.SERVER_ERROR, True, detail, retry_after)
    return _Failure(CallOutcome.BAD_REQUEST, False, detail)


_OPERATOR_HINT = {
    CallOutcome.AUTH_ERROR: "check OPENAI_API_KEY",
    CallOutcome.NOT_FOUND: "check OPENAI_BASE_URL and the model setting (e.g. ORRERY_INGESTION_MODEL)",
    CallOutcome.QUOTA_EXCEEDED: "the account's quota is used up; add credit, then retrigger the job",
    CallOutcome.BAD_REQUEST: "the server rejected the request; see the error, fix the configuration, retrigger",
    CallOutcome.UNSUPPORTED_FORMAT: "the server supports no JSON output mode at all",
}


class _WireMessage(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _WireChoice(BaseModel):
    message: _WireMessage
    finish_reason: str | None = None


class _WireUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _WireCompletion(BaseModel):
    """The part of a chat completion the runtime reads, validated straight from the response bytes.

    Why not the client's ChatCompletion object: building it (openai's construct_type over the whole response) cost
    about a tenth of a call's CPU, for fields nothing here reads. Unknown fields are ignored, so any
    OpenAI-compatible server's extras pass.
    """

    choices: list[_WireChoice]
    usage: _WireUsage | None = None


def retry_delay(
    failure: _Failure,
    retries: int,
    where: str,
    *,
    max_retries: int,
    backoff: tuple[float, float],
    hints: Mapping[CallOutcome, str],
    hint: str,
) -> float:
    """The wait before the next try of a failed call (Retry-After when the server gave one, else equal-jitter backoff
    from `backoff` = (initial, max) seconds), or the job-level error when there is no next try: permanent at once
    (with the client's `hints` for the outcome, else `hint`), transient once `max_retries` are spent or Retry-After
    is too long. The one retry policy of every model client (chat here, embeddings in agents/embeddings.py)."""
    initial_s, max_s = backoff
    if not failure.transient:
        hint = hints.get(failure.outcome, hint)
        raise PermanentError(f"{where} failed ({failure.outcome.value}): {_short(failure.detail)}; {hint}")
    if retries >= max_retries:
        raise TransientError(
            f"{where} still failing after {retries + 1} attempt{'s' if retries else ''} ({failure.outcome.value}): "
            f"{_short(failure.detail)}; the job will be retried"
        )
    if failure.retry_after is not None and failure.retry_after > max_s:
        raise TransientError(
            f"{where} was told to retry after {failure.retry_after:.0f}s ({failure.outcome.value}), longer than "
            f"this job waits; the job will be retried"
        )
    return failure.retry_after if failure.retry_after is not None else equal_jitter(initial_s, retries, max_s)


def _unreadable(exc: ValidationError) -> _Failure:
    """A 200 whose body is not a chat completion: a broken proxy or server; retried like a 5xx."""
    detail = f"the server's 200 response is not a chat completion: {_short(str(exc))}"
    return _Failure(CallOutcome.SERVER_ERROR, True, detail)


@dataclass(frozen=True)
class _Reply:
    """A 200 from the server, before its content is judged."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    mode: ResponseFormatMode
    attempt: int


@dataclass(frozen=True)
class _Judgement:
    outcome: CallOutcome
    errors: list[str]
    value: BaseModel | None = None


class LLMClient:
    """Structured chat completions against one OpenAI-compatible endpoint (see the module docstring)."""

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
        self.endpoint = _public_endpoint(self.base_url)
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
        await self._check_budget(context)
        schema = strict_json_schema(output_type)
        messages: list[dict[str, str]] = prompt.messages()
        usage = LLMUsage()
        purpose = CallPurpose.ANSWER
        while True:
            reply, spent = await self._request(messages, schema, output_type.__name__, model, prompt, purpose, context)
            usage += spent
            judgement = self._judge(reply, output_type, check)
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
            )
            if judgement.value is not None:
                assert isinstance(judgement.value, output_type)
                return StructuredAnswer(judgement.value, usage)
            if purpose is CallPurpose.REPAIR:
                raise PermanentError(
                    f"{context.agent}: the model's answer was still unusable after a repair request "
                    f"({judgement.outcome.value}: {_short('; '.join(judgement.errors))}); "
                    f"model {model} at {self.endpoint}, prompt {prompt.name}@{prompt.version}"
                )
            log.warning(
                "llm.answer_invalid",
                agent=context.agent,
                job_id=context.job_id,
                outcome=judgement.outcome.value,
                errors=judgement.errors[:5],
            )
            repair = load_prompt("llm_repair").render(errors=judgement.errors[:MAX_ERRORS_IN_REPAIR])
            messages = [*messages, {"role": "assistant", "content": reply.content or ""}, *repair.messages()]
            purpose = CallPurpose.REPAIR

    async def _check_budget(self, context: CallContext) -> None:
        if self._budget <= 0:
            return
        now = self._clock()
        since = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
        used = await self._call_log.tokens_used(context.user_id, since)
        if used >= self._budget:
            until = next_utc_midnight(now)
            raise BudgetExceededError(
                f"{context.agent}: user {context.user_id} has used {used} LLM tokens today (UTC), over the daily "
                f"budget of {self._budget} (ORRERY_DAILY_TOKEN_BUDGET); deferred until {until.isoformat()}",
                until=until,
            )

    async def _request(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        schema_name: str,
        model: str,
        prompt: RenderedPrompt,
        purpose: CallPurpose,
        context: CallContext,
    ) -> tuple[_Reply, LLMUsage]:
        """One logical request: transient failures retried with backoff, format downgrades on an unsupported 400."""
        usage = LLMUsage()
        attempt = 0
        retries = 0
        while True:
            attempt += 1
            mode = self._formats.mode_for(self.base_url)
            started = time.perf_counter()
            try:
                raw = await self._client.post(
                    CHAT_COMPLETIONS,
                    cast_to=httpx2.Response,
                    body=self._body(model, messages, mode, schema, schema_name),
                    options={"headers": prompt.headers()},
                )
                completion = _WireCompletion.model_validate_json(raw.content)
            except (openai.APIError, ValidationError) as exc:
                latency_ms = int((time.perf_counter() - started) * 1000)
                failure = _classify(exc) if isinstance(exc, openai.APIError) else _unreadable(exc)
                usage += LLMUsage(calls=1)
                await self._record(
                    context, model, prompt, purpose, mode, attempt, failure.outcome, failure.detail, latency_ms, 0, 0
                )
                await self._after_failure(failure, mode, retries, context, model)
                if failure.outcome is not CallOutcome.UNSUPPORTED_FORMAT:
                    retries += 1
                continue
            latency_ms = int((time.perf_counter() - started) * 1000)
            choice = completion.choices[0] if completion.choices else None
            content = choice.message.content if choice else None
            if completion.usage is not None:
                prompt_tokens, completion_tokens = completion.usage.prompt_tokens, completion.usage.completion_tokens
            else:
                prompt_tokens = sum(estimate_tokens(m["content"]) for m in messages)
                completion_tokens = estimate_tokens(content or "")
            usage += LLMUsage(1, prompt_tokens, completion_tokens)
            reply = _Reply(
                content=content,
                refusal=choice.message.refusal if choice else None,
                finish_reason=choice.finish_reason if choice else None,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                latency_ms=latency_ms,
                mode=mode,
                attempt=attempt,
            )
            return reply, usage

    async def _after_failure(
        self, failure: _Failure, mode: ResponseFormatMode, retries: int, context: CallContext, model: str
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
                    detail=_short(failure.detail),
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

    def _messages_for(
        self, messages: list[dict[str, str]], mode: ResponseFormatMode, schema: dict[str, Any]
    ) -> list[dict[str, str]]:
        """Without server-side schema enforcement, the schema travels in the system message instead."""
        if mode is ResponseFormatMode.JSON_SCHEMA:
            return messages
        instructions = load_prompt("llm_json_mode").render(schema=json.dumps(schema, indent=1)).user
        if messages and messages[0]["role"] == "system":
            first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instructions}"}
            return [first, *messages[1:]]
        return [{"role": "system", "content": instructions}, *messages]

    def _body(
        self, model: str, messages: list[dict[str, str]], mode: ResponseFormatMode, schema: dict[str, Any], name: str
    ) -> dict[str, Any]:
        """The chat completion request's JSON body, sent with the client's documented `post` for custom requests.

        Why not `chat.completions.create`: it walks its typed arguments through a TypedDict transform, trying every
        member of the message-param union for every message, and builds a `ChatCompletion`; together that was most
        of the CPU of an LLM call (bench/bench_ingest.py). The body here is plain JSON already; the client still
        does the request itself (base URL, auth headers, timeouts, its error classes).
        """
        body: dict[str, Any] = {"model": model, "messages": self._messages_for(messages, mode, schema)}
        if mode is ResponseFormatMode.JSON_SCHEMA:
            json_schema = {"name": name[:64], "schema": schema, "strict": self._strict}
            body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
        elif mode is ResponseFormatMode.JSON_OBJECT:
            body["response_format"] = {"type": "json_object"}
        return body

    @staticmethod
    def _judge(reply: _Reply, output_type: type[T], check: Callable[[T], Sequence[str]] | None) -> _Judgement:
        """Parse and validate one answer; the errors are worded for the model, since they go into the repair."""
        if reply.refusal:
            return _Judgement(CallOutcome.REFUSED, [f"you refused to answer: {_short(reply.refusal)}"])
        text = _strip_code_fence(reply.content or "")
        if not text:
            return _Judgement(CallOutcome.INVALID_JSON, ["the answer was empty; reply with one JSON object"])
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if reply.finish_reason == "length":
                return _Judgement(
                    CallOutcome.TRUNCATED,
                    ["the answer was cut off before the JSON was complete; answer more concisely"],
                )
            where = f"line {exc.lineno} column {exc.colno}"
            return _Judgement(CallOutcome.INVALID_JSON, [f"the answer is not valid JSON: {exc.msg} at {where}"])
        try:
            value = output_type.model_validate(data)
        except ValidationError as exc:
            return _Judgement(CallOutcome.SCHEMA_INVALID, error_lines(exc))
        problems = list(check(value)) if check is not None else []
        if problems:
            return _Judgement(CallOutcome.SCHEMA_INVALID, problems)
        return _Judgement(CallOutcome.OK, [], value)

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
    ) -> None:
        await self._call_log.record(
            LLMCallRecord(
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
                error=_short(error) if error else None,
            )
        )


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
