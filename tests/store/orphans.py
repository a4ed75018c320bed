"""Making an orphan: a user Postgres no longer has while a derived store still holds their items."""

from __future__ import annotations

import asyncpg


async def delete_user_row_only(pool: asyncpg.Pool, user_id: str) -> None:
    """Delete the user's row and let nothing cascade. That is what Neo4j and Weaviate see when a dispatcher writes
    after forget-user (no foreign key reaches them); the embedded stores' foreign keys cascade, so for them the key
    is bypassed the way a logical-replication apply or `pg_restore --disable-triggers` bypasses it:
    `session_replication_role = replica` turns the key's triggers off for this transaction (a superuser's right)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        deleted = await conn.execute("DELETE FROM users WHERE user_id = $1", user_id)
    assert deleted == "DELETE 1", f"no user {user_id} to delete"
