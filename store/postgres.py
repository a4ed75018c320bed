"""Postgres connections: one asyncpg pool per process, with JSON codecs and errors a person can act on."""

from __future__ import annotations

import json
import socket
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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset statement.

    Why: the default reset runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release, one extra round trip for every pooled query, which was a tenth of the ingest job's cost. Orrery leaves no
    session state behind (locks are pg_advisory_xact_lock, settings come with the connection, no LISTEN, no cursors
    outside transactions), and asyncpg still rolls back an unfinished transaction before calling this. Code that
    needs session state must take its own connection (store.postgres.connect), not a pooled one.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> asyncpg.Pool:
    """Open a pool or raise BackendUnavailable naming the server."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            init=_init_connection,
            reset=_keep_session,
            command_timeout=300,
        )
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
