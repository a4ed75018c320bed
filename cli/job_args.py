"""Parsing what `run.py trigger` is given on the command line: pure functions, no I/O beyond reading --args-file.

Everything an operator can type is bounded here, so a typo or a hostile value is one ArgumentParseError (one line,
exit 2) and never an OverflowError from datetime arithmetic or a Postgres error from a value it cannot store.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


class ArgumentParseError(ValueError):
    """A malformed --arg, --args-json, --args-file, --in, --at or --job-id; the message says which and how to write
    it."""


MAX_AHEAD = timedelta(days=366)
"""How far from now `--in` and `--at` may place a run. A job scheduled further out is a typo (a year field, a unit),
and keeps its Redis record alive for as long."""

MAX_JOB_ID_LENGTH = 200
"""Longer than any id Orrery derives (`ingest:` + a 200-character conversation id fits) or the web app writes."""


def parse_value(text: str) -> Any:
    """JSON when the text is valid JSON (numbers, true/false/null, lists, objects, quoted strings), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_arg_pairs(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs into a dict (a later key wins)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ArgumentParseError(f"--arg {pair!r}: expected key=value, e.g. --arg conversation_id=abc123")
        result[key.strip()] = parse_value(value)
    return result


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArgumentParseError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ArgumentParseError(f'{source}: expected a JSON object like {{"conversation_id": "abc123"}}')
    return value


def collect_args(pairs: list[str], args_json: str | None, args_file: Path | None) -> dict[str, Any]:
    """--args-json or --args-file as the base, --arg pairs on top."""
    if args_json is not None and args_file is not None:
        raise ArgumentParseError("give --args-json or --args-file, not both")
    base: dict[str, Any] = {}
    if args_json is not None:
        base = _json_object(args_json, "--args-json")
    elif args_file is not None:
        try:
            text = args_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArgumentParseError(f"--args-file {args_file}: {exc.strerror}") from None
        base = _json_object(text, f"--args-file {args_file}")
    return {**base, **parse_arg_pairs(pairs)}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(compact: str) -> float | None:
    """A bare number of seconds (`90`, `1.5`), else None."""
    try:
        return float(compact)
    except ValueError:
        return None


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `10m`, `1h30m`, `2d`, `250ms`; not negative, not beyond MAX_AHEAD."""
    compact = text.strip().lower()
    seconds = _seconds(compact)
    if seconds is None:
        position, seconds = 0, 0.0
        for match in _DURATION.finditer(compact):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position != len(compact) or not compact:
            raise ArgumentParseError(f"--in {text!r}: expected a duration like 30s, 10m, 1h30m or 2d")
    if not math.isfinite(seconds) or seconds < 0:
        raise ArgumentParseError(f"--in {text!r}: expected a duration of zero or more, like 30s, 10m, 1h30m or 2d")
    if seconds > MAX_AHEAD.total_seconds():
        raise ArgumentParseError(f"--in {text!r}: at most {MAX_AHEAD.days} days ahead")
    return timedelta(seconds=seconds)


def parse_at(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (without an offset it is taken as UTC), within MAX_AHEAD of `now` either way; a time in the
    past runs at once."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentParseError(f"--at {text!r}: expected an ISO time like 2026-01-31T09:00:00Z") from None
    try:
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        ahead = moment - now
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the year 9999 in UTC
        ahead = MAX_AHEAD * 2
    if abs(ahead) > MAX_AHEAD:
        raise ArgumentParseError(f"--at {text!r}: must lie within {MAX_AHEAD.days} days of now ({now:%Y-%m-%dT%H:%MZ})")
    return moment


def parse_job_id(text: str, option: str = "--job-id") -> str:
    """A job id (or job name) becomes a Redis key and a ledger column: printable, at most MAX_JOB_ID_LENGTH
    characters. `option` names the argument in the message."""
    if not text.strip():
        raise ArgumentParseError(f"{option}: must not be empty")
    if len(text) > MAX_JOB_ID_LENGTH:
        raise ArgumentParseError(f"{option}: at most {MAX_JOB_ID_LENGTH} characters (got {len(text)})")
    if not text.isprintable():
        raise ArgumentParseError(f"{option} {text!r}: control characters are not allowed")
    return text


def parse_wait_timeout(seconds: float) -> float:
    """--timeout of --wait: a finite number of seconds above zero (click's float type also accepts inf and nan)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ArgumentParseError(f"--timeout {seconds!r}: expected a number of seconds above zero, like 300")
    return seconds
