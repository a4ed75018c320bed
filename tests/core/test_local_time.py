"""users.timezone to a zone, and the local moments the schedules keep: every moment is given, no clock is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.cycle import cycle_due_at
from core.local_time import local_date, local_hour, local_midnight, nearest_local_midnight, user_zone

KIRITIMATI, LISBON, LOS_ANGELES = (ZoneInfo(z) for z in ("Pacific/Kiritimati", "Europe/Lisbon", "America/Los_Angeles"))


@pytest.mark.parametrize(
    "name", ["Europe/Lisbon", "Pacific/Kiritimati", "America/Los_Angeles", "UTC", " Asia/Kolkata "]
)
def test_an_iana_name_is_its_zone(name: str) -> None:
    choice = user_zone(name)
    assert choice.problem is None and str(choice.zone) == name.strip()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (None, "no time zone set"),
        ("", "no time zone set"),
        ("Mars/Olympus_Mons", "not an IANA zone name"),
        ("../../etc/passwd", "not an IANA zone name"),
        ("/etc/localtime", "not an IANA zone name"),
        ("Europe/Lisbon\x00", "not an IANA zone name"),
        ("x" * 10_000, "not an IANA zone name"),
    ],
)
def test_anything_else_is_utc_with_one_reason(name: str | None, reason: str) -> None:
    choice = user_zone(name)
    assert choice.zone is UTC
    assert choice.problem is not None and reason in choice.problem and len(choice.problem) < 120


def test_local_day_hour_and_midnight_in_three_zones() -> None:
    at = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    assert [local_date(at, z).isoformat() for z in (KIRITIMATI, LISBON, LOS_ANGELES)] == [
        "2026-12-07",
        "2026-12-07",
        "2026-12-07",
    ]
    assert [local_hour(at, z) for z in (KIRITIMATI, LISBON, LOS_ANGELES)] == [23, 9, 1]
    assert local_midnight(local_date(at, KIRITIMATI), KIRITIMATI) == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert local_midnight(local_date(at, LOS_ANGELES), LOS_ANGELES) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    # summer in Lisbon (UTC+1): its midnight is 23:00 UTC the day before
    assert local_midnight(datetime(2026, 7, 1).date(), LISBON) == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def test_a_cycle_is_due_at_the_user_s_local_midnight_nearest_its_length() -> None:
    start = datetime(2026, 12, 7, 0, 7, tzinfo=UTC)  # closed just after a UTC (and Lisbon) midnight
    assert cycle_due_at(start, 7, LISBON) == datetime(2026, 12, 14, 0, 0, tzinfo=UTC)
    assert cycle_due_at(start, 7, UTC) == datetime(2026, 12, 14, 0, 0, tzinfo=UTC)
    # 14:07 local in Kiritimati (UTC+14): the nearest midnight is the next local day's
    assert cycle_due_at(start, 7, KIRITIMATI) == datetime(2026, 12, 14, 10, 0, tzinfo=UTC)
    # 16:07 the day before in Los Angeles (UTC-8): the nearest midnight is eight hours later
    assert cycle_due_at(start, 7, LOS_ANGELES) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)


def test_cycles_closed_a_little_after_midnight_keep_turning_at_midnight_across_a_dst_change() -> None:
    start = datetime(2026, 3, 22, 0, 5, tzinfo=UTC)  # Lisbon moves to summer time on 29 March
    due = cycle_due_at(start, 7, LISBON)
    assert due == datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 00:00 on 29 March: still winter time (UTC+0) then
    then = cycle_due_at(due + timedelta(minutes=6), 7, LISBON)  # the next cycle spans the change to UTC+1
    assert then == datetime(2026, 4, 4, 23, 0, tzinfo=UTC) and then.astimezone(LISBON).hour == 0


def test_a_cycle_shorter_than_a_day_turns_at_the_next_midnight_never_before_it_starts() -> None:
    start = datetime(2026, 12, 7, 0, 7, tzinfo=UTC)
    assert cycle_due_at(start, 0.1, UTC) == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert nearest_local_midnight(datetime(2026, 12, 7, 12, 0, tzinfo=UTC), UTC) == datetime(2026, 12, 8, tzinfo=UTC)
