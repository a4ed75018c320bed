"""The retry decision (jobs/runtime/retry.py): backoff and what each error class means, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pydantic
import pytest
from pydantic import BaseModel

from core.errors import DeferredError, PermanentError, TransientError
from jobs.runtime.retry import BACKOFF_CAP_S, backoff_delay, decide

T0 = datetime(2026, 1, 5, 9, 30, 15, 500_000, tzinfo=UTC)  # a Monday


def test_backoff_grows_exponentially_with_equal_jitter() -> None:
    assert [backoff_delay(2, n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [backoff_delay(2, n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff_delay(2, 40, rng=lambda: 1.0) == BACKOFF_CAP_S


def _decide(exc: BaseException, attempt: int = 1, max_tries: int = 3) -> tuple[str, str, float, bool]:
    d = decide(exc, attempt=attempt, max_tries=max_tries, backoff_s=10, now=T0, timeout_s=30, rng=lambda: 0.5)
    return d.action, d.message, d.delay_s, d.expected


def test_transient_errors_retry_until_tries_run_out() -> None:
    assert _decide(TransientError("LLM 503")) == ("retry", "LLM 503", 7.5, True)
    assert _decide(ConnectionRefusedError("refused"), attempt=2)[0::2] == ("retry", 15.0)
    assert _decide(asyncpg.PostgresConnectionError("gone"))[0] == "retry"
    action, message, _, _ = _decide(TransientError("LLM 503"), attempt=3)
    assert (action, message) == ("dead", "LLM 503 (gave up after 3 of 3 tries)")


def test_timeouts_retry_with_a_readable_message() -> None:
    assert _decide(TimeoutError())[:2] == ("retry", "timed out after 30 s")


def test_unexpected_errors_retry_but_are_flagged() -> None:
    assert _decide(KeyError("x"))[0] == "retry" and _decide(KeyError("x"))[3] is False


def test_permanent_and_invalid_arguments_are_dead_at_once() -> None:
    assert _decide(PermanentError("conversation c1 not found"))[:2] == ("dead", "conversation c1 not found")

    class Args(BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Args.model_validate({"n": "x"})
    action, message, _, _ = _decide(caught.value)
    assert action == "dead" and message.startswith("invalid arguments: n: Input should be a valid integer")


def test_deferred_waits_until_its_time() -> None:
    action, _, delay, _ = _decide(DeferredError("budget spent", T0 + timedelta(hours=2)), attempt=3)
    assert (action, delay) == ("defer", 7200.0)
