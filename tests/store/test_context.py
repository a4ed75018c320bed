"""Turn context in a real Redis: round trip, extra fields kept, and every kind of bad data reading as none."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from store.context import TurnContextPackage, read_turn_context, turn_context_key, write_turn_context


async def test_round_trip_keeps_extra_fields(redis_client: aioredis.Redis) -> None:
    await redis_client.set(
        turn_context_key("c1"),
        json.dumps({"suggested_next_focus": "sleep", "flags_for_ingestion": ["milestone"], "mood_trace": [1, 2]}),
    )
    package = await read_turn_context(redis_client, "c1")
    assert package is not None
    assert package.suggested_next_focus == "sleep"
    assert package.flags_for_ingestion == ["milestone"]
    assert package.model_extra == {"mood_trace": [1, 2]}
    await write_turn_context(redis_client, "c2", package)
    assert await read_turn_context(redis_client, "c2") == package


async def test_missing_is_none(redis_client: aioredis.Redis) -> None:
    assert await read_turn_context(redis_client, "nope") is None


async def test_expired_is_none(redis_client: aioredis.Redis) -> None:
    await write_turn_context(redis_client, "c3", TurnContextPackage(), ttl=timedelta(seconds=1))
    assert await read_turn_context(redis_client, "c3") is not None
    await asyncio.sleep(1.2)
    assert await read_turn_context(redis_client, "c3") is None


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        (b"{not json", "turn_context.malformed_json"),
        (b"\xff\xfe", "turn_context.malformed_json"),
        (b"[1, 2]", "turn_context.not_an_object"),
        (b'{"flags_for_ingestion": "should be a list"}', "turn_context.invalid"),
    ],
)
async def test_malformed_is_none_with_a_warning(redis_client: aioredis.Redis, raw: bytes, event: str) -> None:
    await redis_client.set(turn_context_key("bad"), raw)
    with capture_logs() as logs:
        assert await read_turn_context(redis_client, "bad") is None
    assert [entry["event"] for entry in logs] == [event]
    assert logs[0]["log_level"] == "warning"
