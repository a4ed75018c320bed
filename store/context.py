"""The live turn context the web app keeps in Redis under `turn_context:{conversationId}` (seed V9.1).

The dialogue side writes it during a conversation; ingestion reads it as a hint. It is advisory data from another
program, so anything missing, expired or malformed reads as "no context" with a warning, never a failed job.
"""

from __future__ import annotations

import json
from datetime import timedelta

import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError

from core.turn_context import TurnContextPackage
from core.validation import error_lines

__all__ = ["TurnContextPackage", "read_turn_context", "turn_context_key", "write_turn_context"]

log = structlog.get_logger(__name__)


def turn_context_key(conversation_id: str) -> str:
    return f"turn_context:{conversation_id}"


async def read_turn_context(client: aioredis.Redis, conversation_id: str) -> TurnContextPackage | None:
    """The package, or None when absent, expired or unreadable (logged, never raised)."""
    raw = await client.get(turn_context_key(conversation_id))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("turn_context.malformed_json", conversation_id=conversation_id, error=str(exc)[:120])
        return None
    if not isinstance(data, dict):
        log.warning("turn_context.not_an_object", conversation_id=conversation_id, got=type(data).__name__)
        return None
    try:
        return TurnContextPackage.model_validate(data)
    except ValidationError as exc:
        log.warning(
            "turn_context.invalid",
            conversation_id=conversation_id,
            errors=exc.error_count(),
            problems=error_lines(exc),
        )
        return None


async def write_turn_context(
    client: aioredis.Redis, conversation_id: str, package: TurnContextPackage, ttl: timedelta | None = None
) -> None:
    """Write the package (used by the sample seeder and tests; in production the web app writes it)."""
    await client.set(turn_context_key(conversation_id), package.model_dump_json(), ex=ttl)
