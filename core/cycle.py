"""A user's growth cycle as one value: the only place a cycle is named, so its job ids and row ids agree everywhere.

A cycle starts at `users.last_cycle_started_at` (or `created_at` before the first one) and is named by that start
to the second, as compact UTC: its stamp (20261119T000000Z). Every id derived from a cycle is built here from
`Cycle.name` (`{user_id}:{stamp}`): the chain's job ids (`insight:{user_id}:{stamp}`) and the rows the cycle
writes (uuid5 of `{user_id}:{stamp}:{what}`), so no module (and no SQL statement) spells a cycle another way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from core.local_time import nearest_local_midnight, next_local_midnight

CYCLE_NAMESPACE = uuid.UUID("3c7e2f0a-5b61-4d8e-9a2c-1f4b6d8e0a37")
"""uuid5 namespace of the ids the cycle's agents derive (reports, their cards, prompts, projections). Never change
it: a rerun after an upgrade must find the rows the previous version wrote."""

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Cycle:
    """One user's cycle. `start` is aware UTC cut to the second (the precision of the name); build it with
    `Cycle.of`, which refuses a naive datetime (every timestamp Orrery reads is converted to UTC first, so a naive
    one here is a bug that would name another cycle)."""

    user_id: str
    start: datetime

    @classmethod
    def of(cls, user_id: str, start: datetime) -> Cycle:
        if start.tzinfo is None:
            raise ValueError(f"naive datetime {start.isoformat()} given as a cycle start; pass an aware (UTC) one")
        return cls(user_id, start.astimezone(UTC).replace(microsecond=0))

    @classmethod
    def from_stamp(cls, user_id: str, stamp: str) -> Cycle:
        """The cycle named `stamp` (20261119T000000Z); ValueError names the expected form."""
        try:
            start = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"{stamp!r} is not a cycle stamp; expected compact UTC such as 20261119T000000Z") from None
        return cls(user_id, start)

    @property
    def stamp(self) -> str:
        return self.start.strftime(STAMP_FORMAT)

    @property
    def name(self) -> str:
        """`{user_id}:{stamp}`: what every id of this cycle is built from."""
        return f"{self.user_id}:{self.stamp}"

    def job_id(self, step: str) -> str:
        """The one job id of `step` (a job of the cycle chain) for this cycle."""
        return f"{step}:{self.name}"

    def row_id(self, what: str, namespace: uuid.UUID = CYCLE_NAMESPACE) -> str:
        """A deterministic row id for `what` of this cycle: a rerun of the cycle finds the same id."""
        return str(uuid.uuid5(namespace, f"{self.name}:{what}"))

    def starts_at(self, moment: datetime) -> bool:
        """Whether `moment` (aware) is this cycle's start, at the precision of the name."""
        return Cycle.of(self.user_id, moment).start == self.start


def cycle_due_at(start: datetime, length_days: float, zone: tzinfo) -> datetime:
    """When a cycle begun at `start` is due: at the user's local midnight (in `zone`, users.timezone) nearest to
    `start + length_days`, so cycles turn at the user's midnight however late the previous one was closed (a cycle
    closed at 00:07 is due seven local midnights later, not at 00:07); never at or before `start` (a cycle shorter
    than a day then turns at the next midnight)."""
    due = nearest_local_midnight(start + timedelta(days=length_days), zone)
    return due if due > start else next_local_midnight(start, zone)


MEMORY_LEARNED_AT = "ingestion_ts"
"""The memory_units column that places a memory unit in a cycle (`CycleWindow`): when it was learned, never
`creation_ts`, the date of the event it tells, which a memory of last year told this week places a year back."""


@dataclass(frozen=True)
class CycleWindow:
    """What belongs to a cycle: what was learned in it, [start, end). The one definition every agent of the cycle
    and its report read by (store/insight_material.py, store/cycle_report_writes.py):

    - a memory unit by when it was ingested (MEMORY_LEARNED_AT), whatever date the event it tells has;
    - a conversation by the memory units it gave: it belongs to the cycle its memory was learned in, whatever its
      start_time (one that left no memory was small talk: no cycle holds it);
    - growth events, concepts, artifacts and prompts by their created_at, which is when they were learned."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, cycle: Cycle, end: datetime) -> CycleWindow:
        """The window of `cycle` closed at `end` (now, for the current cycle; the next cycle's start for a past one)."""
        if end.tzinfo is None:
            raise ValueError(f"naive datetime {end.isoformat()} given as a cycle's end; pass an aware (UTC) one")
        return cls(cycle.start, max(end.astimezone(UTC), cycle.start))

    def holds(self, learned_at: datetime) -> bool:
        """Whether something learned at `learned_at` (aware) belongs to this cycle."""
        return self.start <= learned_at < self.end
