"""What belongs to a cycle: what was learned in [start, end), whatever date the told event has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.cycle import Cycle, CycleWindow

START = datetime(2026, 11, 30, 0, 7, tzinfo=UTC)
CYCLE = Cycle.of("u", START)


def test_a_cycle_holds_what_was_learned_from_its_start_up_to_its_end() -> None:
    window = CycleWindow.of(CYCLE, START + timedelta(days=7))
    assert window.holds(START) and window.holds(START + timedelta(days=6, hours=23))
    assert not window.holds(START - timedelta(seconds=1)) and not window.holds(START + timedelta(days=7))


def test_its_end_is_never_before_its_start_and_never_naive() -> None:
    assert CycleWindow.of(CYCLE, START - timedelta(days=1)) == CycleWindow(START, START)
    with pytest.raises(ValueError, match="naive datetime"):
        CycleWindow.of(CYCLE, datetime(2026, 12, 7))
