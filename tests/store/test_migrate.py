"""Migrations against a real Postgres: idempotent, safe when run concurrently, refusing edited history."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from store.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate
from store.postgres import connect


async def test_migrate_twice_applies_once(empty_database_url: str) -> None:
    conn = await connect(empty_database_url)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        recorded = await conn.fetchval("SELECT count(*) FROM runtime.schema_migrations")
    finally:
        await conn.close()
    names = [m.name for m in load_migrations()]
    assert first.applied == names
    assert second.applied == []
    assert second.already_applied == names
    assert recorded == len(names)


async def test_two_concurrent_migrations_are_safe(empty_database_url: str) -> None:
    a, b = await connect(empty_database_url), await connect(empty_database_url)
    try:
        reports = await asyncio.gather(migrate(a), migrate(b))
        recorded = await a.fetchval("SELECT count(*) FROM runtime.schema_migrations")
    finally:
        await a.close()
        await b.close()
    applied = sorted(reports[0].applied + reports[1].applied)
    assert applied == sorted(m.name for m in load_migrations())
    assert recorded == len(applied)


async def test_edited_applied_file_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    extra = directory / "9000_probe.sql"
    extra.write_text("CREATE TABLE runtime.probe (id INT);\n")
    conn = await connect(empty_database_url)
    try:
        await migrate(conn, directory)
        extra.write_text("CREATE TABLE runtime.probe (id BIGINT);\n")
        with pytest.raises(MigrationError, match=r"9000_probe\.sql was edited after it was applied"):
            await migrate(conn, directory)
        extra.unlink()
        with pytest.raises(MigrationError, match="does not know"):
            await migrate(conn, directory)
    finally:
        await conn.close()


async def test_failed_migration_rolls_back(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_ok.sql").write_text("CREATE TABLE runtime_ok (id INT);\n")
    (directory / "0002_broken.sql").write_text("CREATE TABLE half (id INT);\nSELEC 1;\n")
    conn = await connect(empty_database_url)
    try:
        with pytest.raises(MigrationError, match=r"0002_broken\.sql failed and was rolled back"):
            await migrate(conn, directory)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT count(*) FROM runtime.schema_migrations") == 1
    finally:
        await conn.close()


def test_misnamed_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        load_migrations(tmp_path)
