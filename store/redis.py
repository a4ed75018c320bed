"""Redis connections for everything that is not arq itself (turn context, locks, health)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from store.postgres import BackendUnavailable, redact_url


async def connect_redis(url: str, *, timeout: float = 5.0) -> aioredis.Redis:
    """A client that has answered PING, or BackendUnavailable naming the server."""
    client: aioredis.Redis = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(f"cannot reach Redis at {redact_url(url)}: {reason[:200]}") from None
    return client
