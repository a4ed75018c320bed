"""Parsing what `run.py trigger` is given on the command line: pure functions, no I/O beyond reading --args-file."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


class ArgumentParseError(ValueError):
    """A malformed --arg, --args-json, --args-file, --in or --at; the message says which and how to write it."""


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


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `10m`, `1h30m`, `2d`, `250ms`."""
    compact = text.strip().lower()
    try:
        return timedelta(seconds=float(compact))
    except ValueError:
        pass
    position, seconds = 0, 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(compact) or not compact:
        raise ArgumentParseError(f"--in {text!r}: expected a duration like 30s, 10m, 1h30m or 2d")
    return timedelta(seconds=seconds)


def parse_at(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentParseError(f"--at {text!r}: expected an ISO time like 2026-01-31T09:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
