"""Shared fixtures: one real Postgres and one real Redis per test session, a fresh database per test.

By default both servers come from the embedded stack in a temporary directory; TEST_DATABASE_URL / TEST_REDIS_URL
point the suite at servers of your own instead. Each test gets its own database cloned from a migrated template
(tens of milliseconds), so tests never see each other's rows.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from jobs.runtime.logs import configure_logging
from store import embedded
from store.migrate import migrate
from store.postgres import connect, create_pool
from tests import network_guard as _network_guard
from tests.network_guard import network_guard  # noqa: F401  (autouse: only this machine is reachable in tests)

_network_guard.install()

# In-process workers log as a worker does (plain tracebacks). structlog's default renders a traceback with every
# frame's locals through rich, which under load stalled a test worker's event loop past its 2 s lease.
configure_logging("INFO", "console")
structlog.configure(cache_logger_on_first_use=False)  # structlog.testing.capture_logs must reach every logger

logging.getLogger("pgserver").setLevel(logging.WARNING)

TEMPLATE_DB = "orrery_test_template"


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointed at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    """Outside pytest's basetemp on purpose: pytest deletes all but the newest three basetemp directories when a
    session starts, so a second test session started meanwhile (another checkout, an IDE) would delete this
    session's running Postgres under it."""
    directory = Path(tempfile.mkdtemp(prefix="orrery-test-stack-"))
    yield directory
    embedded.remove_data_dir(directory)


@pytest.fixture(scope="session")
def server_dsn(stack_dir: Path) -> str:
    """A DSN of the test Postgres server (its maintenance database)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    return with_database(embedded.start_postgres(stack_dir), "postgres")


@pytest.fixture(scope="session")
def redis_server_url(stack_dir: Path) -> str:
    return os.environ.get("TEST_REDIS_URL") or embedded.start_redis(stack_dir)


@pytest.fixture(scope="session")
async def template_database(server_dsn: str) -> str:
    """A database with every migration applied, cloned for each test."""
    admin = await connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await connect(with_database(server_dsn, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


@pytest.fixture
async def empty_database_url(server_dsn: str) -> AsyncIterator[str]:
    """A brand-new database with nothing in it (for migration tests)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database_url(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db_pool = await create_pool(database_url, min_size=1, max_size=5)
    try:
        yield db_pool
    finally:
        await db_pool.close()


@pytest.fixture
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    """The test Redis, emptied before each test."""
    client = aioredis.Redis.from_url(redis_server_url)
    await client.flushdb()
    await client.aclose()
    yield redis_server_url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
