"""The job record format (jobs/runtime/wire.py) and the keys around it, pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jobs.runtime import wire
from jobs.runtime.keys import cron_claim_key


def test_wire_format_is_json_and_tolerates_minimal_records() -> None:
    record = wire.job_record("ingest", {"conversation_id": "c1"}, enqueue_time_ms=5)
    assert json.loads(record) == {"t": None, "f": "ingest", "a": [], "k": {"conversation_id": "c1"}, "et": 5}
    minimal = wire.deserialize(b'{"f": "ingest", "k": {"conversation_id": "c1"}}')
    assert minimal["a"] == [] and minimal["t"] is None and minimal["et"] > 0
    assert json.loads(wire.serialize({"r": ValueError("boom")})) == {"r": "boom"}


def test_cron_claim_key_is_per_job_and_slot() -> None:
    slot = datetime(2026, 1, 5, 9, 31, tzinfo=UTC)
    assert cron_claim_key("sweep_timeouts", slot) == f"orrery:cron:sweep_timeouts:{int(slot.timestamp())}"
