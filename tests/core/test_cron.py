"""Cron expressions: parsing and next-slot arithmetic (core/cron.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.cron import ScheduleError, parse_cron

T0 = datetime(2026, 1, 5, 9, 30, 15, 500_000, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", datetime(2026, 1, 5, 9, 31, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 1, 5, 9, 45, tzinfo=UTC)),
        ("17 3 * * *", datetime(2026, 1, 6, 3, 17, tzinfo=UTC)),
        ("0 9 * * 0", datetime(2026, 1, 11, 9, 0, tzinfo=UTC)),  # cron 0 = Sunday
        ("0 9 * * 7", datetime(2026, 1, 11, 9, 0, tzinfo=UTC)),  # and so is 7
        ("0 0 1 2 *", datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        ("* * * * * *", datetime(2026, 1, 5, 9, 30, 16, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 1, 5, 9, 30, 20, tzinfo=UTC)),
        ("0 0-10/5,30 * * * *", datetime(2026, 1, 5, 10, 0, tzinfo=UTC)),
    ],
)
def test_next_slot(expression: str, expected: datetime) -> None:
    assert parse_cron(expression).next_after(T0) == expected


def test_next_slot_is_strictly_after_a_slot() -> None:
    slot = datetime(2026, 1, 5, 9, 31, tzinfo=UTC)
    assert parse_cron("* * * * *").next_after(slot) == slot + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "expected 5 fields"),
        ("61 * * * *", "minute field '61'"),
        ("* * * * mon", "weekday field 'mon'"),
        ("*/0 * * * *", "positive step"),
        ("0 9 1 * 1", "either day of month or day of week"),
    ],
)
def test_bad_schedules_say_which_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_cron(expression)
