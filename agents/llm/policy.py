"""The retry and classification policy of the model clients: what a failed HTTP attempt was (an outcome, whether
retrying can help, whether the request reached the model), how long to wait before the next try, and when to hand
the job back to the runtime (TransientError) or give up (PermanentError). Pure but for the clock in Retry-After.

Retries live in the clients and only there (the openai client runs with max_retries=0): 429/5xx/timeouts/connection
errors are retried with exponential backoff and jitter, honouring Retry-After; when they keep failing the error
becomes a TransientError and the job runtime retries the whole job later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
import openai
from pydantic import ValidationError

from core.backoff import equal_jitter
from core.errors import PermanentError, TransientError
from core.llm_records import CallOutcome
from core.vocabulary import storable_text

MAX_ERROR_TEXT = 500
"""Longest error text a record, a job error or a repair request line holds."""


def short(text: str) -> str:
    """One line of at most MAX_ERROR_TEXT characters that Postgres can store (it may quote the model's answer, and
    it goes into runtime.llm_calls, the job ledger and the repair request)."""
    text = storable_text(" ".join(text.split()))
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
class Failure:
    """How one HTTP attempt failed and what that means for trying again."""

    outcome: CallOutcome
    transient: bool
    detail: str
    retry_after: float | None = None
    reached: bool = False
    """Whether the request reached the model though no usage came back (a timeout, a broken or unreadable answer):
    its prompt is then recorded as estimated tokens, since a provider bills a prompt it received."""


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


def classify(exc: openai.APIError) -> Failure:
    """Map an openai exception onto an outcome and whether retrying can help."""
    refused = _connect_failure(exc)
    if isinstance(exc, openai.APITimeoutError) and refused is None:
        return Failure(CallOutcome.TIMEOUT, True, "request timed out", reached=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = refused or exc.__cause__ or exc
        if isinstance(cause, httpx2.ReadError):  # the request was sent; the answer broke off while it was read
            detail = f"the connection broke while the answer was read: {type(cause).__name__}: {cause}"
            return Failure(CallOutcome.CONNECTION_ERROR, True, detail, reached=True)
        return Failure(CallOutcome.CONNECTION_ERROR, True, f"cannot connect: {type(cause).__name__}: {cause}")
    if not isinstance(exc, openai.APIStatusError):
        return Failure(CallOutcome.BAD_REQUEST, False, str(exc))
    status = exc.status_code
    body = json.dumps(exc.body) if exc.body is not None else ""
    detail = f"HTTP {status}: {exc.message}"
    retry_after = _retry_after_seconds(exc.response.headers)
    if status == 429:
        if "insufficient_quota" in body or "insufficient_quota" in exc.message:
            return Failure(CallOutcome.QUOTA_EXCEEDED, False, detail)
        return Failure(CallOutcome.RATE_LIMITED, True, detail, retry_after)
    if status in (400, 422) and any(word in f"{exc.message} {body}".lower() for word in _FORMAT_WORDS):
        return Failure(CallOutcome.UNSUPPORTED_FORMAT, False, detail)
    if status in (401, 403):
        return Failure(CallOutcome.AUTH_ERROR, False, detail)
    if status == 404:
        return Failure(CallOutcome.NOT_FOUND, False, detail)
    if status == 408:
        return Failure(CallOutcome.TIMEOUT, True, detail, retry_after)
    if status == 409 or status >= 500:
        return Failure(CallOutcome.SERVER_ERROR, True, detail, retry_after)
    return Failure(CallOutcome.BAD_REQUEST, False, detail)


def retry_delay(
    failure: Failure,
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
    is too long. The one retry policy of every model client (chat: agents/llm/client.py; embeddings:
    agents/embeddings.py)."""
    initial_s, max_s = backoff
    if not failure.transient:
        hint = hints.get(failure.outcome, hint)
        raise PermanentError(f"{where} failed ({failure.outcome.value}): {short(failure.detail)}; {hint}")
    if retries >= max_retries:
        raise TransientError(
            f"{where} still failing after {retries + 1} attempt{'s' if retries else ''} ({failure.outcome.value}): "
            f"{short(failure.detail)}; the job will be retried"
        )
    if failure.retry_after is not None and failure.retry_after > max_s:
        raise TransientError(
            f"{where} was told to retry after {failure.retry_after:.0f}s ({failure.outcome.value}), longer than "
            f"this job waits; the job will be retried"
        )
    return failure.retry_after if failure.retry_after is not None else equal_jitter(initial_s, retries, max_s)


def unreadable(exc: ValidationError) -> Failure:
    """A 200 whose body is not a chat completion: a broken proxy or server; retried like a 5xx."""
    detail = f"the server's 200 response is not a chat completion: {short(str(exc))}"
    return Failure(CallOutcome.SERVER_ERROR, True, detail, reached=True)
