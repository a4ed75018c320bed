"""Cron schedules: parsing and next-slot arithmetic, pure (no clock, no Redis), on top of arq's `next_cron`.

A schedule is standard cron with five fields (`minute hour day-of-month month day-of-week`) or six with a leading
seconds field. Fields take `*`, `N`, `A-B`, `*/S`, `A-B/S` and comma lists; day-of-week is 0-7 with 0 and 7 Sunday.
All times are UTC. Restricting both day-of-month and day-of-week is refused: cron ORs them, arq ANDs them, and a
schedule must not mean two things.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from arq.cron import next_cron

OFF = "off"
"""The schedule override that disables a cron job."""


class ScheduleError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


@dataclass(frozen=True)
class Schedule:
    """Allowed values per field; None means any."""

    expression: str
    second: frozenset[int]
    minute: frozenset[int] | None
    hour: frozenset[int] | None
    day: frozenset[int] | None
    month: frozenset[int] | None
    weekday: frozenset[int] | None  # Python numbering: Monday = 0

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment` (UTC, whole seconds)."""
        return next_cron(
            moment.astimezone(UTC),
            month=_opt(self.month),
            day=_opt(self.day),
            weekday=_opt(self.weekday),
            hour=_opt(self.hour),
            minute=_opt(self.minute),
            second=set(self.second),
            microsecond=0,
        )


def _opt(values: frozenset[int] | None) -> set[int] | None:
    return None if values is None else set(values)


_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int] | None:
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                first, last = base.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = int(base)
                end = high if step_text else start
        except ValueError:
            raise ScheduleError(f"{name} field {text!r}: expected numbers, ranges A-B, steps /S or *") from None
        if step < 1 or not (low <= start <= end <= high):
            raise ScheduleError(f"{name} field {text!r}: values must lie in {low}-{high} with a positive step")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def check_expression(expression: str) -> Schedule | None:
    """A schedule override as ORRERY_CRON gives it: "off" (None, the job is not scheduled) or a cron expression."""
    if expression.strip().lower() == OFF:
        return None
    return parse_cron(expression)


def parse_cron(expression: str) -> Schedule:
    """Parse a 5- or 6-field cron expression (see the module docstring)."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ScheduleError(
            f"cron {expression!r}: expected 5 fields (minute hour day month weekday) or 6 with leading seconds"
        )
    parsed = {
        name: _parse_field(text, name, low, high) for text, (name, low, high) in zip(fields, _FIELDS, strict=True)
    }
    if parsed["day"] is not None and parsed["weekday"] is not None:
        raise ScheduleError(f"cron {expression!r}: restrict either day of month or day of week, not both")
    weekday = parsed["weekday"]
    second = parsed["second"]
    return Schedule(
        expression=expression,
        second=second if second is not None else frozenset(range(60)),
        minute=parsed["minute"],
        hour=parsed["hour"],
        day=parsed["day"],
        month=parsed["month"],
        weekday=None if weekday is None else frozenset((value - 1) % 7 for value in weekday),
    )
