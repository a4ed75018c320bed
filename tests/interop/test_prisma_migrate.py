"""The Prisma Migrate baseline (store/prisma/migrations/0_init) creates the same `public` schema as Orrery's own
migrations, so `prisma migrate resolve --applied 0_init` on a database Orrery migrated is a true statement."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from store.migrate import MigrationError, migrate
from store.postgres import connect
from store.prisma_schema import live_tables, schema_differences

PRISMA_DIR = Path(__file__).resolve().parents[2] / "store" / "prisma"
BASELINE = PRISMA_DIR / "migrations" / "0_init" / "migration.sql"


async def test_the_baseline_creates_the_schema_orrery_migrates_to(pool: asyncpg.Pool, empty_database_url: str) -> None:
    conn = await connect(empty_database_url)
    try:
        await conn.execute(BASELINE.read_text(encoding="utf-8"))
        from_prisma_migration = await live_tables(conn)
    finally:
        await conn.close()
    async with pool.acquire() as orrery:
        from_orrery_migrations = await live_tables(orrery)
    assert len(from_orrery_migrations) == 15
    assert schema_differences(from_prisma_migration, from_orrery_migrations) == []


def test_the_migrations_folder_is_one_prisma_understands() -> None:
    """Prisma Migrate reads <dir>/migration.sql per migration and refuses a folder whose lock names another provider."""
    migrations = PRISMA_DIR / "migrations"
    assert sorted(p.name for p in migrations.iterdir()) == ["0_init", "migration_lock.toml"]
    assert 'provider = "postgresql"' in (migrations / "migration_lock.toml").read_text(encoding="utf-8")
    config = (PRISMA_DIR / "prisma.config.ts").read_text(encoding="utf-8")
    assert 'schema: "../schema.prisma"' in config and 'migrations: { path: "migrations" }' in config


async def test_orrery_adopts_a_public_schema_prisma_built_first(empty_database_url: str) -> None:
    """The web app ran `prisma migrate deploy` (0_init) on an empty database before Orrery's first start: Orrery's
    public migrations are recorded as adopted, its runtime ones applied, and nothing fails on existing tables."""
    conn = await connect(empty_database_url)
    try:
        await conn.execute(BASELINE.read_text(encoding="utf-8"))
        await conn.execute(
            "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY, migration_name VARCHAR(255) NOT NULL, "
            "finished_at TIMESTAMPTZ); INSERT INTO _prisma_migrations VALUES ('x', '0_init', now())"
        )
        report = await migrate(conn)
        assert report.adopted == ["0001_public_schema.sql", "0005_conversation_message_seq.sql"]
        assert "0002_job_ledger.sql" in report.applied and report.already_applied == []
        assert (await migrate(conn)).applied == []  # and from then on it is an ordinary migrated database
    finally:
        await conn.close()


async def test_a_public_schema_that_differs_is_refused_with_the_differences(empty_database_url: str) -> None:
    conn = await connect(empty_database_url)
    try:
        await conn.execute(BASELINE.read_text(encoding="utf-8"))
        await conn.execute('ALTER TABLE "conversation_messages" DROP COLUMN "seq"')
        with pytest.raises(MigrationError, match=r"differs from store/schema.prisma: .*conversation_messages\.seq"):
            await migrate(conn)
        assert await conn.fetchval("SELECT count(*) FROM runtime.schema_migrations") == 0  # nothing half-recorded
    finally:
        await conn.close()
