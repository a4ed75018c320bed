"""runtime.projection_refresh (migration 0019): which users' 3D projections wait for a refresh, and how it went.

Why a row besides the job: the refresh is debounced through its job id (`projection_refresh:{user_id}`, enqueued a
little after the first request), so a request that comes while that job runs cannot enqueue it again. The row keeps
the request: the run that finishes sees a request newer than its own start and goes again, and the hourly sweep
finds a request whose enqueue was lost. It also counts deaths, which bound how often a failing refresh is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from store.postgres import Executor


@dataclass(frozen=True)
class RefreshState:
    user_id: str
    requested_at: datetime
    refreshed_at: datetime | None
    deaths: int
    last_error: str | None


async def request(db: Executor, user_ids: Sequence[str], *, at: datetime) -> None:
    """The users' projections are stale as of `at`: a request, with a fresh budget of deaths (new material is worth
    trying again). A user that is gone is skipped."""
    if not user_ids:
        return
    await db.execute(
        "INSERT INTO runtime.projection_refresh (user_id, requested_at) "
        "SELECT u.user_id, $2 FROM public.users u WHERE u.user_id = ANY($1::text[]) "
        "ON CONFLICT (user_id) DO UPDATE SET requested_at = GREATEST(projection_refresh.requested_at, "
        "EXCLUDED.requested_at), deaths = 0",
        sorted(set(user_ids)),
        at,
    )


async def refreshed(db: Executor, user_id: str, *, started: datetime) -> bool:
    """A refresh that started reading at `started` is done: the request is settled as of then and its deaths are
    forgotten. True when a request came after `started` (the projection just written misses it)."""
    again = await db.fetchval(
        "UPDATE runtime.projection_refresh SET refreshed_at = $2, deaths = 0, last_error = NULL "
        "WHERE user_id = $1 RETURNING requested_at > $2",
        user_id,
        started,
    )
    return bool(again)


async def died(db: Executor, user_id: str, error: str) -> None:
    """A refresh of the user died (its tries spent): one more death, and why."""
    await db.execute(
        "UPDATE runtime.projection_refresh SET deaths = deaths + 1, last_error = left($2, 2000) WHERE user_id = $1",
        user_id,
        error,
    )


async def get_state(db: Executor, user_id: str) -> RefreshState | None:
    row = await db.fetchrow(
        "SELECT user_id, requested_at, refreshed_at, deaths, last_error FROM runtime.projection_refresh "
        "WHERE user_id = $1",
        user_id,
    )
    return RefreshState(**dict(row)) if row is not None else None


async def pending(db: Executor, *, requested_before: datetime, below_deaths: int, limit: int) -> list[str]:
    """Users with a request older than `requested_before` not refreshed since, whose refresh died fewer than
    `below_deaths` times: what the hourly sweep enqueues again. A sweep across users, by nature."""
    rows = await db.fetch(
        "SELECT user_id FROM runtime.projection_refresh "
        "WHERE (refreshed_at IS NULL OR refreshed_at < requested_at) AND requested_at < $1 AND deaths < $2 "
        "ORDER BY requested_at, user_id LIMIT $3",
        requested_before,
        below_deaths,
        limit,
    )
    return [row["user_id"] for row in rows]
