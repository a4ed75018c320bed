"""public.user_sessions: the web app's sessions; Orrery only deletes the expired ones (the hourly sweep)."""

from __future__ import annotations

from store.postgres import Executor
from store.repos._base import row_count


async def delete_expired_sessions(db: Executor) -> int:
    """Delete every user's sessions past their expiry (TIMESTAMP(3) in UTC, hence now() at UTC); returns how many."""
    status: str = await db.execute("DELETE FROM public.user_sessions WHERE expires_at < (now() AT TIME ZONE 'UTC')")
    return row_count(status)
