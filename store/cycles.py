"""The store side of the growth cycle (jobs/cycle.py owns the workflow): where a user's cycle stands, who is due,
and closing a cycle.

Closing a cycle is a conditional transition on the locked user row: `last_cycle_started_at` moves to the closing
moment (cut to the second, the precision of a cycle's name) and `concepts_created_in_cycle` restarts from zero, only
while the row's current cycle is still the one being closed. So the report's write, the dead policy's close and a
racing second closer take turns on the row lock and the cycle advances once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.cycle import Cycle
from core.errors import PermanentError
from core.vocabulary import NodeLabel
from store import outbox
from store.postgres import Executor
from store.repos import users
from store.repos._base import to_db, transaction

_CYCLE_START = "COALESCE(last_cycle_started_at, created_at)"
"""A user's current cycle starts at their last reset, or at their creation before the first one."""


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class CycleState:
    """Where one user's growth cycle stands."""

    cycle: Cycle
    """The user's current cycle."""
    name: str | None
    last_cycle_started_at: datetime | None
    """None while the user's first cycle (from created_at) runs."""
    language_preference: str | None = None
    timezone: str | None = None
    """As the web app wrote them; core/language.py and core/local_time.py read them."""

    @property
    def user_id(self) -> str:
        return self.cycle.user_id


async def read_cycle(db: Executor, user_id: str) -> CycleState | None:
    """The user's current cycle, None when there is no such user."""
    row = await db.fetchrow(
        f"SELECT user_id, name, {_CYCLE_START} AS cycle_start, last_cycle_started_at, language_preference, timezone "
        "FROM users WHERE user_id = $1",
        user_id,
    )
    if row is None:
        return None
    last = row["last_cycle_started_at"]
    return CycleState(
        cycle=Cycle.of(row["user_id"], _aware(row["cycle_start"])),
        name=row["name"],
        last_cycle_started_at=None if last is None else _aware(last),
        language_preference=row["language_preference"],
        timezone=row["timezone"],
    )


@dataclass(frozen=True)
class CycleClock:
    """A user's current cycle and the zone it turns in, as the web app wrote it (core/cycle.cycle_due_at decides)."""

    cycle: Cycle
    timezone: str | None


TURN_MARGIN_DAYS = 14 / 24
"""How much earlier than `length_days` after its start a cycle can be due: it turns at the user's local midnight
nearest to that moment (at most 12 hours before it, 13 on a day a DST change shortens), so older ones are read."""


async def cycles_near_due(db: Executor, *, now: datetime, length_days: float, limit: int) -> list[CycleClock]:
    """The current cycles of active users old enough to be due at `now` in some zone, oldest first, with the
    user's time zone: the caller keeps those whose `cycle_due_at` has come.

    A due cycle stays due until it is closed (its report's write, or the chain's dead policy, resets it), so the
    hourly dispatcher sees a cycle whose chain is under way again; jobs/cycle.py decides from the ledger what that
    cycle needs (usually nothing: its next step is queued). No job id is built here."""
    rows = await db.fetch(
        f"""
        SELECT user_id, {_CYCLE_START} AS cycle_start, timezone FROM public.users
        WHERE account_status = 'active'
          AND {_CYCLE_START} <= $1::timestamp - $2 * interval '1 day'
        ORDER BY 2, 1
        LIMIT $3
        """,
        to_db(now),
        length_days - TURN_MARGIN_DAYS,
        limit,
    )
    return [CycleClock(Cycle.of(r["user_id"], _aware(r["cycle_start"])), r["timezone"]) for r in rows]


async def lock_current_cycle(conn: Executor, user_id: str) -> Cycle:
    """The user's current cycle with their row locked until the transaction ends (call it inside one); a user
    deleted meanwhile is a PermanentError."""
    start = await conn.fetchval(f"SELECT {_CYCLE_START} FROM users WHERE user_id = $1 FOR UPDATE", user_id)
    if start is None:
        raise PermanentError(f"user {user_id} was deleted while their cycle was being closed")
    return Cycle.of(user_id, _aware(start))


async def reset_cycle(conn: Executor, cycle: Cycle, at: datetime) -> bool:
    """Start the user's next cycle at `at` if `cycle` is still their current one (the caller holds the row lock,
    `lock_current_cycle`); True when it did. The caller records the user's outbox change."""
    if await lock_current_cycle(conn, cycle.user_id) != cycle:
        return False
    await users.start_cycle(conn, cycle.user_id, Cycle.of(cycle.user_id, at).start)
    return True


async def close_cycle(db: Executor, cycle: Cycle, at: datetime) -> bool:
    """Close `cycle` at `at` without a report (the chain's dead policy when the report cannot be written), in one
    transaction with the user's outbox row; False when the cycle was already closed."""
    async with transaction(db) as conn:
        closed = await reset_cycle(conn, cycle, at)
        if closed:
            await outbox.record_changes(conn, cycle.user_id, [outbox.Change(NodeLabel.USER, cycle.user_id)])
    return closed
