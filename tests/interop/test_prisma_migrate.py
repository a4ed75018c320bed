"""Prisma Migrate's migrations (store/prisma/migrations: the baseline 0_init, then each later public change) create
the same `public` schema as Orrery's own migrations, so `prisma migrate resolve --applied` of each on a database
Orrery migrated is a true statement."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from store.migrate import MigrationError, migrate
from store.postgres import connect
from store.prisma_schema import live_tables, schema_differences

PRISMA_DIR = Path(__file__).resolve().parents[2] / "store" / "prisma"
BASELINE = PRISMA_DIR / "migrations" / "0_init" / "migration.sql"
PRISMA_MIGRATIONS = ["0_init", "16_memory_revisions", "22_memory_units_ingestion_ts"]
"""In the order Prisma applies them (by name)."""


def prisma_migrations_sql() -> list[str]:
    return [
        (PRISMA_DIR / "migrations" / name / "migration.sql").read_text(encoding="utf-8") for name in PRISMA_MIGRATIONS
    ]


async def test_prismas_migrations_create_the_schema_orrery_migrates_to(
    pool: asyncpg.Pool, empty_database_url: str
) -> None:
    conn = await connect(empty_database_url)
    try:
        for sql in prisma_migrations_sql():
            await conn.execute(sql)
        from_prisma_migration = await live_tables(conn)
    finally:
        await conn.close()
    async with pool.acquire() as orrery:
        from_orrery_migrations = await live_tables(orrery)
    assert len(from_orrery_migrations) == 16
    assert schema_differences(from_prisma_migration, from_orrery_migrations) == []


def test_the_migrations_folder_is_one_prisma_understands() -> None:
    """Prisma Migrate reads <dir>/migration.sql per migration and refuses a folder whose lock names another provider."""
    migrations = PRISMA_DIR / "migrations"
    assert sorted(p.name for p in migrations.iterdir()) == sorted([*PRISMA_MIGRATIONS, "migration_lock.toml"])
    assert 'provider = "postgresql"' in (migrations / "migration_lock.toml").read_text(encoding="utf-8")
    config = (PRISMA_DIR / "prisma.config.ts").read_text(encoding="utf-8")
    assert 'schema: "../schema.prisma"' in config and 'migrations: { path: "migrations" }' in config


async def test_orrery_adopts_a_public_schema_prisma_built_first(empty_database_url: str) -> None:
    """The web app ran `prisma migrate deploy` on an empty database before Orrery's first start: Orrery's public
    migrations are recorded as adopted, its runtime ones applied, and nothing fails on existing tables."""
    conn = await connect(empty_database_url)
    try:
        for sql in prisma_migrations_sql():
            await conn.execute(sql)
        await conn.execute(
            "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY, migration_name VARCHAR(255) NOT NULL, "
            "finished_at TIMESTAMPTZ); INSERT INTO _prisma_migrations VALUES ('x', '0_init', now())"
        )
        report = await migrate(conn)
        assert report.adopted == [
            "0001_public_schema.sql",
            "0005_conversation_message_seq.sql",
            "0016_memory_revisions.sql",
            "0022_memory_units_ingestion_ts.sql",
        ]
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


async def test_a_later_public_migration_runs_on_a_public_schema_orrery_built(
    empty_database_url: str, tmp_path: Path
) -> None:
    """A database Orrery migrated before 0016 existed: the new public migration runs like any other (the public
    schema differs from schema.prisma by exactly that table, which is no reason to refuse it)."""
    older = tmp_path / "migrations"
    older.mkdir()
    for sql in sorted((PRISMA_DIR.parent / "migrations").glob("*.sql")):
        if sql.name < "0016":
            (older / sql.name).write_text(sql.read_text(encoding="utf-8"), encoding="utf-8")
    conn = await connect(empty_database_url)
    try:
        await migrate(conn, older)
        report = await migrate(conn)
        assert report.adopted == []
        assert report.applied[:2] == ["0016_memory_revisions.sql", "0017_revision_graph_and_interactions.sql"]
        assert await conn.fetchval("SELECT to_regclass('public.memory_revisions') IS NOT NULL")
    finally:
        await conn.close()
