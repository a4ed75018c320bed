"""Maintenance statements run by the cron sweeps: silent conversations and expired sessions (users due for a cycle:
store/cycles.py).

Timestamps in `public` are TIMESTAMP(3) WITHOUT TIME ZONE holding UTC (Prisma's convention), hence
`now() AT TIME ZONE 'UTC'` rather than now().
"""

from __future__ import annotations

from store.postgres import Executor

_UTC_NOW = "(now() AT TIME ZONE 'UTC')"


async def end_silent_conversations(db: Executor, *, timeout_minutes: float, limit: int) -> list[str]:
    """`active` conversations whose last message (or start, without messages) is older than the timeout become
    `ended`, with ended_at = that last activity: the conversation ended when the user stopped talking."""
    rows = await db.fetch(
        f"""
        WITH silent AS (
            SELECT c.id, COALESCE(last.at, c.start_time) AS last_at
            FROM public.conversations c
            LEFT JOIN LATERAL (
                SELECT max(m."timestamp") AS at FROM public.conversation_messages m WHERE m.conversation_id = c.id
            ) last ON true
            WHERE c.status = 'active'
              AND COALESCE(last.at, c.start_time) < {_UTC_NOW} - $1 * interval '1 minute'
            ORDER BY 2
            LIMIT $2
            FOR UPDATE OF c SKIP LOCKED
        )
        UPDATE public.conversations c
        SET status = 'ended', ended_at = silent.last_at
        FROM silent
        WHERE c.id = silent.id AND c.status = 'active'
        RETURNING c.id
        """,
        timeout_minutes,
        limit,
    )
    return [r["id"] for r in rows]


async def ended_conversation_ids(db: Executor, *, limit: int) -> list[str]:
    """Conversations waiting for ingestion, oldest first (ended by the sweep or by the web app).

    `processing` ones too: their job is normally queued or running (then the enqueue is a no-op under the dedupe
    key), but one whose job was lost with Redis must not stay `processing` for ever.
    """
    rows = await db.fetch(
        "SELECT id FROM public.conversations WHERE status IN ('ended', 'processing') "
        "ORDER BY ended_at NULLS FIRST, id LIMIT $1",
        limit,
    )
    return [r["id"] for r in rows]


async def delete_expired_sessions(db: Executor) -> int:
    status: str = await db.execute(f"DELETE FROM public.user_sessions WHERE expires_at < {_UTC_NOW}")
    return int(status.split()[-1])
