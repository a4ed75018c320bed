"""Postgres connections: one asyncpg pool per process, with JSON codecs and errors a person can act on."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


class BackendUnavailable(Exception):
    """A configured backend cannot be reached; the message names it (password redacted) and the reason."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_connect_error(exc: BaseException) -> str:
    """A short reason for a failed connection, without the driver's traceback."""
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "authentication failed"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "database does not exist"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    has_vector = await conn.fetchval("SELECT 1 FROM pg_type WHERE typname = 'vector'")
    if has_vector:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> asyncpg.Pool:
    """Open a pool or raise BackendUnavailable naming the server."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=timeout, init=_init_connection,
            command_timeout=300,
        )  # fmt: skip
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
        raise BackendUnavailable(f"cannot reach Postgres at {redact_url(dsn)}: {describe_connect_error(exc)}") from None
    assert pool is not None
    return pool


async def connect(dsn: str, *, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection (CLI commands, migrations), same codecs and errors as the pool."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
        raise BackendUnavailable(f"cannot reach Postgres at {redact_url(dsn)}: {describe_connect_error(exc)}") from None
    await _init_connection(conn)
    return conn


Executor = asyncpg.Connection | asyncpg.Pool
"""What repository functions accept: a pool for single statements, a connection inside a transaction."""


def record_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
