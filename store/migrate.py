"""Apply the plain-SQL migrations in store/migrations/ in order, once each.

Why hand-rolled rather than a framework: the files must stay plain SQL that matches what Prisma Migrate would write
(the web app shares the database), and all we need is ordering, a checksum ledger and an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from store.prisma_schema import live_tables, load_expected_tables, schema_differences

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ADVISORY_LOCK_KEY = 0x4F52_5259  # "ORRY": one migrator at a time, across every process and host
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
PUBLIC_MIGRATIONS = frozenset({"0001", "0005", "0016", "0022"})
"""The migrations that build `public` (the rest touch only `runtime`); Prisma's migrations in store/prisma/migrations
hold the same (0_init: 0001 and 0005; 16_memory_revisions: 0016; 22_memory_units_ingestion_ts: 0022)."""


class MigrationError(Exception):
    """The migration history and the files disagree; the message says which file and what to do."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        normalized = self.sql.replace("\r\n", "\n").encode()
        return hashlib.sha256(normalized).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every NNNN_name.sql file in order; a misnamed or duplicated version is an error, not a silent skip."""
    migrations: list[Migration] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lowercase_name.sql")
        version = match.group(1)
        if version in seen:
            raise MigrationError(f"{path.name}: version {version} is also used by {seen[version]}")
        seen[version] = path.name
        migrations.append(Migration(version, path.name, path.read_text(encoding="utf-8")))
    return migrations


_LEDGER = """
CREATE SCHEMA IF NOT EXISTS runtime;
CREATE TABLE IF NOT EXISTS runtime.schema_migrations (
    version     TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    already_applied: list[str]
    adopted: list[str] = field(default_factory=list)
    """Public migrations recorded as applied because the web app's Prisma had built the same schema first."""


async def applied_migrations(conn: asyncpg.Connection) -> dict[str, tuple[str, str]]:
    """version -> (name, checksum) for what the database has recorded (empty before the first migrate)."""
    exists = await conn.fetchval("SELECT to_regclass('runtime.schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM runtime.schema_migrations")
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


def check_history(files: list[Migration], applied: dict[str, tuple[str, str]]) -> list[Migration]:
    """Pure check of recorded history against the files; returns the migrations still to apply."""
    known = {m.version for m in files}
    unknown = sorted(set(applied) - known)
    if unknown:
        names = ", ".join(applied[v][0] for v in unknown)
        raise MigrationError(
            f"the database was migrated by a newer Orrery: it has migrations this code does not know ({names}); "
            "run a newer Orrery against it"
        )
    pending = []
    for migration in files:
        recorded = applied.get(migration.version)
        if recorded is None:
            pending.append(migration)
        elif recorded[1] != migration.checksum:
            raise MigrationError(
                f"{migration.name} was edited after it was applied (checksum differs from the one recorded); "
                "restore the file and put the change in a new migration"
            )
    return pending


def history_problem(files: list[Migration], applied: dict[str, tuple[str, str]]) -> str | None:
    """Pure: why code built from `files` must not run against a database with this history, in one line; None when
    every migration is applied. Distinguishes a database never migrated, one migrated by an older Orrery (pending
    migrations) and one migrated by a newer Orrery (migrations this code does not know)."""
    if not applied:
        return "the database is not migrated: run `run.py migrate`"
    try:
        pending = check_history(files, applied)
    except MigrationError as exc:
        return str(exc)
    if not pending:
        return None
    names = ", ".join(m.name for m in pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    return (
        f"the database was migrated by an older Orrery: {len(pending)} migration(s) pending ({names}); "
        "run `run.py migrate`"
    )


async def schema_problem(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> str | None:
    """history_problem for the database behind `conn` (one query): every command and worker asks this before it
    touches a table, so an unmigrated database is one line, not a traceback from the first missing relation."""
    return history_problem(load_migrations(directory), await applied_migrations(conn))


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> MigrationReport:
    """Apply pending migrations, each in its own transaction, under a cluster-wide advisory lock."""
    files = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_LEDGER)
        pending = check_history(files, await applied_migrations(conn))
        adopted = await _adopt_public_schema(conn, pending)
        pending = [m for m in pending if m.name not in adopted]
        done = [m.name for m in files if m not in pending and m.name not in adopted]
        applied = []
        for migration in pending:
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO runtime.schema_migrations (version, name, checksum, duration_ms) "
                        "VALUES ($1, $2, $3, $4)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                        int((time.perf_counter() - started) * 1000),
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from None
            applied.append(migration.name)
        return MigrationReport(applied=applied, already_applied=done, adopted=adopted)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def _adopt_public_schema(conn: asyncpg.Connection, pending: list[Migration]) -> list[str]:
    """When the web app created `public` first (Prisma Migrate's store/prisma/migrations, or `prisma db push`),
    Orrery's public migrations would fail on tables that exist. If the live `public` is exactly the schema those
    migrations build (store/schema.prisma), the pending ones are recorded as applied instead of run; if it differs,
    one error says how, unless Orrery applied some public migrations itself (then the pending ones simply run)."""
    public = [m for m in pending if m.version in PUBLIC_MIGRATIONS]
    if not public or await conn.fetchval("SELECT to_regclass('public.users')") is None:
        return []
    live = {name: table for name, table in (await live_tables(conn)).items() if name != "_prisma_migrations"}
    drift = schema_differences(load_expected_tables(), live)
    if drift and len(public) < len(PUBLIC_MIGRATIONS):
        return []  # Orrery built `public` itself and a later public migration is pending: it runs as any other
    if drift:
        raise MigrationError(
            "the public schema exists but was not created by Orrery, and it differs from store/schema.prisma: "
            + "; ".join(drift[:5])
            + (f" (and {len(drift) - 5} more)" if len(drift) > 5 else "")
            + ". Bring it in line with store/schema.prisma (e.g. prisma migrate deploy of store/prisma/migrations), "
            "then run `run.py migrate` again"
        )
    for migration in public:
        await conn.execute(
            "INSERT INTO runtime.schema_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, 0)",
            migration.version,
            migration.name,
            migration.checksum,
        )
    return [m.name for m in public]
