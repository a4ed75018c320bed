"""What the runtime does with a failed attempt, decided from the exception's class alone (pure, no I/O).

Transient failures (TransientError, connection errors to any store, timeouts, anything unexpected) retry with
exponential backoff and jitter until max_tries is spent, then become dead letters; PermanentError and invalid
arguments are dead at once; DeferredError re-schedules the job at its `until` without using up an attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
import pydantic
import redis.exceptions

from core.backoff import equal_jitter
from core.errors import DeferredError, JobError, PermanentError, TransientError
from core.validation import error_lines

BACKOFF_CAP_S = 3600.0
"""No retry waits longer than an hour, however many tries a job has."""

MESSAGE_LIMIT = 2000

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.CannotConnectNowError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)

Action = Literal["retry", "dead", "defer"]


@dataclass(frozen=True)
class Decision:
    action: Action
    error_class: str
    message: str
    delay_s: float = 0.0
    """Seconds until the next attempt (retry) or until `until` (defer)."""
    expected: bool = True
    """False for exceptions outside the known classes: logged with their traceback so someone classifies them."""


def backoff_delay(base_s: float, attempt: int, *, rng: Callable[[], float] = random.random) -> float:
    """The wait before try `attempt + 1`: base * 2^(attempt-1), capped at an hour, with equal jitter."""
    return equal_jitter(base_s, attempt - 1, BACKOFF_CAP_S, rng=rng)


def describe(exc: BaseException, timeout_s: float | None = None) -> str:
    """A one-line message for the ledger and the logs."""
    if isinstance(exc, TimeoutError) and timeout_s is not None and not str(exc):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, pydantic.ValidationError):
        return invalid_args_message(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:MESSAGE_LIMIT]


def invalid_args_message(exc: pydantic.ValidationError) -> str:
    """`field: problem` for each bad field, so the fix is obvious without the pydantic traceback."""
    return "invalid arguments: " + "; ".join(error_lines(exc, root="(arguments)"))


def decide(
    exc: BaseException,
    *,
    attempt: int,
    max_tries: int,
    backoff_s: float,
    now: datetime,
    timeout_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> Decision:
    """Retry, dead-letter or defer an attempt that raised `exc`."""
    name = type(exc).__name__
    message = describe(exc, timeout_s)
    if isinstance(exc, DeferredError):
        return Decision("defer", name, message, max((exc.until - now) / timedelta(seconds=1), 0.0))
    if isinstance(exc, PermanentError | pydantic.ValidationError):
        return Decision("dead", name, message)
    expected = isinstance(exc, (TransientError, JobError, *_CONNECTION_ERRORS))
    if attempt >= max_tries:
        return Decision("dead", name, f"{message} (gave up after {attempt} of {max_tries} tries)", expected=expected)
    return Decision("retry", name, message, backoff_delay(backoff_s, attempt, rng=rng), expected=expected)
