"""A cycle's window is found by index (migration 0022): the memory units learned in a week of a long history are read
through (user_id, ingestion_ts), not by walking every row of the user, whatever the event dates say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from core.cycle import MEMORY_LEARNED_AT
from store.repos import users

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_the_window_of_a_long_history_is_read_through_the_ingestion_ts_index(pool: asyncpg.Pool) -> None:
    user = await users.create_user(pool, "user-long-history", email="long@example.org")
    await pool.execute(  # four years of memories, one every 6 hours, each learned when it happened
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts) "
        "SELECT 'mu-' || n, $1, 'memory ' || n, 'text', t, t, t "
        "FROM generate_series(1, 6000) AS n, LATERAL (SELECT $2::timestamp - n * interval '6 hours' AS t) AS at",
        user.user_id,
        NOW.replace(tzinfo=None),
    )
    await pool.execute("ANALYZE memory_units")
    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")  # the plan a prepared statement keeps
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN SELECT muid FROM memory_units "
                f"WHERE user_id = $1 AND {MEMORY_LEARNED_AT} >= $2 AND {MEMORY_LEARNED_AT} < $3 LIMIT 500",
                user.user_id,
                (NOW - timedelta(days=7)).replace(tzinfo=None),
                NOW.replace(tzinfo=None),
            )
        )
        await conn.execute("RESET plan_cache_mode")
    assert "memory_units_user_id_ingestion_ts_idx" in plan, plan
