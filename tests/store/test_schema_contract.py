"""store/schema.prisma (the web app's contract) and the migrated database agree in every detail Prisma cares about."""

from __future__ import annotations

import asyncpg
import pytest

from store.prisma_schema import (
    Column,
    ForeignKey,
    Index,
    PrismaSchemaError,
    expected_tables,
    live_tables,
    load_expected_tables,
    schema_differences,
)


async def test_migrated_public_schema_matches_schema_prisma(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        live = await live_tables(conn)
    assert schema_differences(load_expected_tables(), live) == []


async def test_contract_covers_every_seed_model_and_the_v91_additions() -> None:
    tables = load_expected_tables()
    assert len(tables) == 16
    columns = {(t.name, c.name): c for t in tables.values() for c in t.columns}
    assert columns[("proactive_prompts", "priority")] == Column("priority", "integer", False, "5")
    assert columns[("communities", "core_concept_ids")] == Column("core_concept_ids", "text[]", True, "ARRAY[]::text[]")
    assert columns[("users", "created_at")].default == "CURRENT_TIMESTAMP"
    assert columns[("users", "user_id")].default is None  # uuid() is the client's job
    assert columns[("conversation_messages", "seq")] == Column(
        "seq", "bigint", False, "nextval('conversation_messages_seq_seq'::regclass)"
    )  # BigInt @default(autoincrement()) is a BIGSERIAL
    assert columns[("cards", "updated_at")] == Column("updated_at", "timestamp(3) without time zone", False, None)
    assert tables["concepts"].foreign_keys["concepts_merged_into_concept_id_fkey"] == ForeignKey(
        "concepts_merged_into_concept_id_fkey",
        ("merged_into_concept_id",),
        "concepts",
        ("concept_id",),
        "NO ACTION",
        "NO ACTION",
    )
    assert tables["memory_units"].indexes["memory_units_user_id_creation_ts_idx"] == Index(
        "memory_units_user_id_creation_ts_idx", ("user_id", "creation_ts DESC"), unique=False
    )


async def test_drift_is_reported_column_by_column(pool: asyncpg.Pool) -> None:
    """The check is not vacuous: an added column, a changed default, a dropped index and a changed action show up."""
    async with pool.acquire() as conn:
        await conn.execute('ALTER TABLE "users" ADD COLUMN "nickname" TEXT')
        await conn.execute("""ALTER TABLE "concepts" ALTER COLUMN "status" SET DEFAULT 'new'""")
        await conn.execute('DROP INDEX "growth_events_user_id_dim_key_idx"')
        await conn.execute('ALTER TABLE "cards" DROP CONSTRAINT "cards_user_id_fkey"')
        await conn.execute(
            'ALTER TABLE "cards" ADD CONSTRAINT "cards_user_id_fkey" FOREIGN KEY ("user_id") '
            'REFERENCES "users"("user_id") ON DELETE RESTRICT ON UPDATE CASCADE'
        )
        problems = schema_differences(load_expected_tables(), await live_tables(conn))
    joined = "\n".join(problems)
    assert len(problems) == 4, joined
    assert "users.nickname: column not in schema.prisma" in joined
    assert "concepts.status" in joined and "'new'::text" in joined
    assert "growth_events_user_id_dim_key_idx" in joined
    assert "cards_user_id_fkey" in joined and "RESTRICT" in joined


def test_unknown_prisma_constructs_are_refused() -> None:
    with pytest.raises(PrismaSchemaError, match="unsupported type Decimal"):
        expected_tables("model A {\n  id String @id\n  price Decimal\n}\n")
    with pytest.raises(PrismaSchemaError, match="@@fulltext"):
        expected_tables("model A {\n  id String @id\n  @@fulltext([id])\n}\n")
