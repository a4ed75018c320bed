"""Parsing `run.py trigger`'s arguments (pure): every value an operator can type is bounded or refused in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.job_args import (
    MAX_AHEAD,
    ArgumentParseError,
    collect_args,
    parse_arg_pairs,
    parse_at,
    parse_duration,
    parse_job_id,
    parse_value,
    parse_wait_timeout,
)

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_arg_values_are_json_when_they_parse() -> None:
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("[1, 2]") == [1, 2]
    assert parse_value("abc-123") == "abc-123" and parse_value('"007"') == "007"
    assert parse_arg_pairs(["conversation_id=c1", "reprocess=true", "note=a=b"]) == {
        "conversation_id": "c1",
        "reprocess": True,
        "note": "a=b",
    }
    with pytest.raises(ArgumentParseError, match="expected key=value"):
        parse_arg_pairs(["conversation_id"])


def test_args_json_or_file_with_pairs_on_top(tmp_path: Path) -> None:
    assert collect_args(["b=2"], '{"a": 1, "b": 1}', None) == {"a": 1, "b": 2}
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"a": "x"}))
    assert collect_args([], None, path) == {"a": "x"}
    with pytest.raises(ArgumentParseError, match="not both"):
        collect_args([], "{}", path)
    with pytest.raises(ArgumentParseError, match="expected a JSON object"):
        collect_args([], "[1]", None)
    with pytest.raises(ArgumentParseError, match="not valid JSON"):
        collect_args([], "{oops", None)


def test_durations_are_finite_not_negative_and_at_most_a_year_ahead() -> None:
    assert parse_duration("10m") == timedelta(minutes=10)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration("366d") == MAX_AHEAD
    with pytest.raises(ArgumentParseError, match="expected a duration like"):
        parse_duration("10 minutes")
    for text in ("inf", "-inf", "nan", "-5", "-1e3"):
        with pytest.raises(ArgumentParseError, match="expected a duration of zero or more"):
            parse_duration(text)
    for text in ("1e12", "999999999999d", "367d", "1e308"):
        with pytest.raises(ArgumentParseError, match="at most 366 days ahead"):
            parse_duration(text)


def test_times_are_taken_as_utc_and_must_lie_within_a_year_of_now() -> None:
    assert parse_at("2026-01-31T09:00:00Z", NOW) == datetime(2026, 1, 31, 9, tzinfo=UTC)
    assert parse_at("2026-01-31T09:00:00", NOW) == datetime(2026, 1, 31, 9, tzinfo=UTC)
    assert parse_at("2026-01-31T11:00:00+02:00", NOW) == datetime(2026, 1, 31, 9, tzinfo=UTC)
    assert parse_at("2025-12-24T00:00:00Z", NOW) < NOW  # a time in the past runs at once
    with pytest.raises(ArgumentParseError, match="ISO time"):
        parse_at("tomorrow", NOW)
    for text in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "2030-01-01T00:00:00Z", "1970-01-01"):
        with pytest.raises(ArgumentParseError, match="must lie within 366 days of now"):
            parse_at(text, NOW)


def test_job_ids_are_printable_and_bounded() -> None:
    assert parse_job_id("ingest:c_123") == "ingest:c_123"
    assert parse_job_id("x" * 200) == "x" * 200
    with pytest.raises(ArgumentParseError, match="at most 200 characters"):
        parse_job_id("x" * 201)
    for text in ("a\x00b", "a\nb", "a\tb", "\x1b[31mred"):
        with pytest.raises(ArgumentParseError, match="control characters"):
            parse_job_id(text)
    with pytest.raises(ArgumentParseError, match=r"^JOB_ID: must not be empty"):
        parse_job_id("", "JOB_ID")


def test_wait_timeouts_are_finite_and_positive() -> None:
    assert parse_wait_timeout(0.5) == 0.5
    for value in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ArgumentParseError, match="expected a number of seconds above zero"):
            parse_wait_timeout(value)
