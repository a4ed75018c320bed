"""A user's local time: `users.timezone` (an IANA name the web app writes) as a zone, and the local moments the
schedules keep (the local midnight a cycle turns at, the local hour daily prompts come at).

Pure, with every moment given: nothing here reads a clock. Zones come from zoneinfo (the system's database, else the
`tzdata` package). A name zoneinfo does not know, an empty one or a path is UTC, with the reason for the caller to log.
Arithmetic is done in UTC: two aware datetimes sharing a zoneinfo subtract as wall clocks, which a DST change breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_ZONE_CHARS = 64


@dataclass(frozen=True)
class ZoneChoice:
    """The zone to keep the user's time in and, when the stored name could not be used, why (one log line)."""

    zone: tzinfo
    problem: str | None = None


def user_zone(name: str | None) -> ZoneChoice:
    """The zone `users.timezone` names ("Europe/Lisbon", "UTC"), else UTC and the reason."""
    raw = (name or "").strip()
    if not raw:
        return ZoneChoice(UTC, "no time zone set; using UTC")
    shown = raw[:MAX_ZONE_CHARS] + ("…" if len(raw) > MAX_ZONE_CHARS else "")
    if len(raw) > MAX_ZONE_CHARS:
        return ZoneChoice(UTC, f"time zone {shown!r} is not an IANA zone name; using UTC")
    try:
        return ZoneChoice(ZoneInfo(raw))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path or a malformed key
        return ZoneChoice(UTC, f"time zone {shown!r} is not an IANA zone name; using UTC")


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The user's calendar day at `moment` (aware)."""
    return moment.astimezone(zone).date()


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The moment (UTC) the user's `day` begins; where a DST change skips midnight, the first moment after it as
    zoneinfo resolves the missing wall time."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_local_midnight(moment: datetime, zone: tzinfo) -> datetime:
    """The first local midnight strictly after `moment`."""
    return local_midnight(local_date(moment, zone) + timedelta(days=1), zone)


def nearest_local_midnight(moment: datetime, zone: tzinfo) -> datetime:
    """The local midnight closest to `moment` (the later one on a tie)."""
    at = moment.astimezone(UTC)
    before = local_midnight(local_date(at, zone), zone)
    after = next_local_midnight(at, zone)
    return before if at - before < after - at else after


def local_hour(moment: datetime, zone: tzinfo) -> int:
    """The hour on the user's clock at `moment`."""
    return moment.astimezone(zone).hour
