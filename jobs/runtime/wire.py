"""The job wire format: arq's job record as JSON instead of pickle, so any language can enqueue.

A job is two Redis writes (see docs/jobs.md for a TypeScript example):
  SET arq:job:{job_id} '{"t":null,"f":"ingest","a":[],"k":{"conversation_id":"c1"},"et":1700000000000}' PX <ttl>
  ZADD orrery:queue:interactive <run-at unix ms> {job_id}
Only `f` (job name) and `k` (arguments) are required; `a` must be empty (arguments are keyword-only), `t` (attempt
override) and `et` (enqueue time: unix ms, or an ISO 8601 string with an offset, which is what `JSON.stringify` makes
of a JavaScript Date) are optional.

Why every field is checked here: arq uses `f`, `a`, `k`, `t` and `et` before any Orrery code runs, and a wrong type
there (`"et": "2026-…"`, `"t": "1"`, `"f": []`) raised in its poll loop and stopped the whole worker, again after
each restart. A record that fails a check raises RecordError, which arq turns into a call to finish_failed_job: a
NotRunnable dead letter with the reason (jobs/runtime/attempt.py `record_unrunnable`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

MAX_ATTEMPT_OVERRIDE = 1000
"""The largest `t` a record may carry (the ledger's attempt column is a smallint; no job needs more tries)."""

MAX_ENQUEUE_TIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a Python datetime (arq's enqueue_time) can hold."""


class RecordError(ValueError):
    """A job record that cannot run as written; the message names the field and what it must be."""


def serialize(data: Mapping[str, Any]) -> bytes:
    """arq's job_serializer; anything JSON cannot encode (an exception kept as a failure result) becomes its str."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq's job_deserializer: every field arq reads is type-checked, the optional ones filled in, an ISO `et`
    converted to unix ms; anything else raises RecordError with the reason."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RecordError(f"the job record is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"the job record must be a JSON object, not {_json_type(data)}")
    name = data.get("f")
    if not isinstance(name, str) or not name:
        raise RecordError(f'"f" (the job name) must be a non-empty string, not {_json_type(name)}')
    kwargs = data.setdefault("k", {})
    if not isinstance(kwargs, dict):
        raise RecordError(f'"k" (the arguments) must be a JSON object of named arguments, not {_json_type(kwargs)}')
    if data.setdefault("a", []) != []:
        raise RecordError('"a" must be empty or left out: arguments are named, give them all in "k"')
    data["t"] = _attempt_override(data.get("t"))
    data["et"] = _enqueue_time_ms(data.get("et"))
    return data


def _attempt_override(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ATTEMPT_OVERRIDE:
        raise RecordError(
            f'"t" (the attempt override) must be null or a whole number 0..{MAX_ATTEMPT_OVERRIDE}, '
            f"not {_json_type(value)} {json.dumps(value)[:40]}"
        )
    return value


def _enqueue_time_ms(value: Any) -> int:
    """A record's `et` as unix ms: now when absent, a number as is, an ISO 8601 string with an offset converted."""
    if value is None:
        return int(time.time() * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f'"et" must be unix milliseconds or an ISO 8601 time, not {value[:40]!r}') from None
        if parsed.tzinfo is None:
            raise RecordError(f'"et" {value[:40]!r} has no UTC offset; add "Z" or "+hh:mm"')
        value = parsed.timestamp() * 1000
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f'"et" (the enqueue time) must be unix milliseconds, not {_json_type(value)}')
    if not 0 <= value <= MAX_ENQUEUE_TIME_MS:
        raise RecordError(f'"et" {value:.0f} is not a unix time in milliseconds between 1970 and 9999')
    return int(value)


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages a TypeScript developer reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def job_record(name: str, args: Mapping[str, Any], *, enqueue_time_ms: int) -> bytes:
    """The value of arq:job:{job_id}."""
    return serialize({"t": None, "f": name, "a": [], "k": dict(args), "et": enqueue_time_ms})
