"""The job wire format: arq's job record as JSON instead of pickle, so any language can enqueue.

A job is two Redis writes (see docs/jobs.md for a TypeScript example):
  SET arq:job:{job_id} '{"t":null,"f":"ingest","a":[],"k":{"conversation_id":"c1"},"et":1700000000000}' PX <ttl>
  ZADD orrery:queue:interactive <run-at unix ms> {job_id}
Only `f` (job name) and `k` (arguments) are required; `a` must be empty (arguments are keyword-only), `t` (attempt
override) and `et` (enqueue time, unix ms) are optional.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any


def serialize(data: Mapping[str, Any]) -> bytes:
    """arq's job_serializer; anything JSON cannot encode (an exception kept as a failure result) becomes its str."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """arq's job_deserializer; fills the optional fields a hand-written producer may leave out."""
    data: dict[str, Any] = json.loads(raw)
    data.setdefault("t", None)
    data.setdefault("a", [])
    data.setdefault("k", {})
    data.setdefault("et", int(time.time() * 1000))
    return data


def job_record(name: str, args: Mapping[str, Any], *, enqueue_time_ms: int) -> bytes:
    """The value of arq:job:{job_id}."""
    return serialize({"t": None, "f": name, "a": [], "k": dict(args), "et": enqueue_time_ms})
