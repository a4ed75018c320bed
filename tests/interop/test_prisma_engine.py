"""Prisma itself agrees: its own schema engine (the wasm build Prisma's CLI uses, from npm) validates
store/schema.prisma, and the DMMF it produces describes exactly the tables of the migrated database."""

from __future__ import annotations

import asyncpg

from store.prisma_schema import SCHEMA_PATH, live_tables, load_expected_tables, schema_differences, tables_from_dmmf
from tests.interop.node import PRISMA_6, prisma_engine

SCHEMA = SCHEMA_PATH.read_text(encoding="utf-8")
PRISMA_6_DATASOURCE = 'datasource db {\n  provider = "postgresql"\n  url      = env("DATABASE_URL")\n}'
"""The one change docs/store.md tells Prisma 6 users to make."""


async def test_prisma_7_validates_the_schema_and_its_dmmf_matches_the_live_database(pool: asyncpg.Pool) -> None:
    result = prisma_engine(SCHEMA)
    assert result["valid"], result.get("error")
    from_prisma = tables_from_dmmf(result["dmmf"])
    async with pool.acquire() as conn:
        live = await live_tables(conn)
    assert schema_differences(from_prisma, live) == []
    assert from_prisma == load_expected_tables()  # Orrery's own reader of the file agrees with Prisma's


async def test_a_schema_change_shows_up_through_prisma_dmmf(pool: asyncpg.Pool) -> None:
    """Not vacuous: a field Prisma reads as optional, and a dropped index, are both reported."""
    changed = SCHEMA.replace("  role              String //", "  role              String? //").replace(
        "  @@index([user_id, dim_key]) // V9.1 addition\n", ""
    )
    result = prisma_engine(changed)
    assert result["valid"], result.get("error")
    async with pool.acquire() as conn:
        problems = schema_differences(tables_from_dmmf(result["dmmf"]), await live_tables(conn))
    assert len(problems) == 2, problems
    assert "conversation_messages.role" in problems[0] and "growth_events_user_id_dim_key_idx" in problems[1]


def test_prisma_7_refuses_a_datasource_url_and_prisma_6_needs_exactly_that_one_line() -> None:
    with_url = SCHEMA.replace('datasource db {\n  provider = "postgresql"\n}', PRISMA_6_DATASOURCE)
    assert with_url != SCHEMA
    refused = prisma_engine(with_url)
    assert not refused["valid"] and "datasource property `url` is no longer supported" in refused["error"]

    assert not prisma_engine(SCHEMA, PRISMA_6)["valid"]
    prisma_6 = prisma_engine(with_url, PRISMA_6)
    assert prisma_6["valid"], prisma_6.get("error")
    assert tables_from_dmmf(prisma_6["dmmf"]) == load_expected_tables()
