"""Pure logic of the runtime: cron parsing, backoff and error classes, registry rules, wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from core.cron import ScheduleError, parse_cron
from core.errors import DeferredError, PermanentError, TransientError
from jobs.runtime import wire
from jobs.runtime.keys import INTERACTIVE, cron_claim_key
from jobs.runtime.registry import JobSpec, JobTable, UnknownJobError
from jobs.runtime.resources import ledger_dsn
from jobs.runtime.retry import BACKOFF_CAP_S, backoff_delay, decide
from tests.jobs.testjobs import TEST_JOBS

T0 = datetime(2026, 1, 5, 9, 30, 15, 500_000, tzinfo=UTC)  # a Monday


# --- schedules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", datetime(2026, 1, 5, 9, 31, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 1, 5, 9, 45, tzinfo=UTC)),
        ("17 3 * * *", datetime(2026, 1, 6, 3, 17, tzinfo=UTC)),
        ("0 9 * * 0", datetime(2026, 1, 11, 9, 0, tzinfo=UTC)),  # cron 0 = Sunday
        ("0 9 * * 7", datetime(2026, 1, 11, 9, 0, tzinfo=UTC)),  # and so is 7
        ("0 0 1 2 *", datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        ("* * * * * *", datetime(2026, 1, 5, 9, 30, 16, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 1, 5, 9, 30, 20, tzinfo=UTC)),
        ("0 0-10/5,30 * * * *", datetime(2026, 1, 5, 10, 0, tzinfo=UTC)),
    ],
)
def test_next_slot(expression: str, expected: datetime) -> None:
    assert parse_cron(expression).next_after(T0) == expected


def test_next_slot_is_strictly_after_a_slot() -> None:
    slot = datetime(2026, 1, 5, 9, 31, tzinfo=UTC)
    assert parse_cron("* * * * *").next_after(slot) == slot + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "minute field '61'"),
        ("* * * * mon", "weekday field 'mon'"),
        ("*/0 * * * *", "positive step"),
        ("0 9 1 * 1", "either day of month or day of week"),
    ],
)
def test_bad_schedules_say_which_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_cron(expression)


def test_cron_claim_key_is_per_job_and_slot() -> None:
    slot = datetime(2026, 1, 5, 9, 31, tzinfo=UTC)
    assert cron_claim_key("sweep_timeouts", slot) == f"orrery:cron:sweep_timeouts:{int(slot.timestamp())}"


# --- backoff and error classes ----------------------------------------------------------------------------------


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


# --- registry and wire format -----------------------------------------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str


async def _handler(ctx: object, args: _Args) -> None:
    return None


def _spec(**overrides: object) -> JobSpec:
    fields: dict[str, object] = {
        "name": "test.registry", "args_model": _Args, "handler": _handler, "queue": INTERACTIVE, "timeout_s": 1,
        "max_tries": 1, "backoff_s": 0, "dedupe_key": "thing:{conversation_id}", "cron": None, "description": "x",
    }  # fmt: skip
    fields.update(overrides)
    return JobSpec(**fields)  # type: ignore[arg-type]


def test_spec_rules() -> None:
    assert _spec().job_id_for(_Args(conversation_id="c1")) == "thing:c1"
    with pytest.raises(ValueError, match="queue must be one of"):
        _spec(queue="urgent")
    with pytest.raises(ValueError, match="extra='forbid'"):
        _spec(args_model=BaseModel)


def test_job_table_refuses_duplicates_and_bad_cron_and_names_the_known_jobs() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        TEST_JOBS.with_jobs(_spec(name="diag.echo"))
    with pytest.raises(UnknownJobError, match=r"known jobs: .*sweep_timeouts"):
        TEST_JOBS.get("ingest-typo")
    with pytest.raises(ScheduleError):
        JobTable([_spec(name="test.bad-cron", cron="every minute")])


def test_wire_format_is_json_and_tolerates_minimal_records() -> None:
    record = wire.job_record("ingest", {"conversation_id": "c1"}, enqueue_time_ms=5)
    assert json.loads(record) == {"t": None, "f": "ingest", "a": [], "k": {"conversation_id": "c1"}, "et": 5}
    minimal = wire.deserialize(b'{"f": "ingest", "k": {"conversation_id": "c1"}}')
    assert minimal["a"] == [] and minimal["t"] is None and minimal["et"] > 0
    assert json.loads(wire.serialize({"r": ValueError("boom")})) == {"r": "boom"}


def test_ledger_connections_skip_the_commit_flush() -> None:
    assert ledger_dsn("postgresql://u:p@h:5432/db") == "postgresql://u:p@h:5432/db?synchronous_commit=off"
    assert ledger_dsn("postgresql://u@/db?host=/tmp/s&synchronous_commit=on") == (
        "postgresql://u@/db?host=%2Ftmp%2Fs&synchronous_commit=off"
    )
