"""The cycle report's numbers are computed in code (growth per dimension this cycle vs the previous one, counts) and
an empty cycle is reported without a model; the windows a report covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.cycle_report import CycleMaterial, CycleReportAgent, GrowthSums, content_data, growth_table
from core.cycle import Cycle
from core.errors import PermanentError
from jobs.cycle_report import report_windows

START = datetime(2026, 11, 12, tzinfo=UTC)
END = START + timedelta(days=7)


def material(**update: object) -> CycleMaterial:
    base = CycleMaterial(user_id="u1", previous_start=START - timedelta(days=7), cycle_start=START, cycle_end=END)
    return base.model_copy(update=update)


def test_growth_per_dimension_has_all_six_with_the_change_since_the_previous_cycle() -> None:
    table = growth_table(material(growth={"act_self": GrowthSums(this_cycle=0.7, previous_cycle=0.2, events=3)}))
    assert list(table) == ["know_self", "know_world", "act_self", "act_world", "show_self", "show_world"]
    assert table["act_self"] == {"this_cycle": 0.7, "previous_cycle": 0.2, "change": 0.5, "events": 3}
    assert table["show_world"] == {"this_cycle": 0.0, "previous_cycle": 0.0, "change": 0.0, "events": 0}


async def test_an_empty_cycle_is_reported_without_a_model() -> None:
    report = await CycleReportAgent(None, model="m").run(material(counts={"prompts": 2}))
    assert report.empty and report.narrative is None and report.usage.calls == 0
    assert report.content_data["counts"]["prompts"] == 2 and report.content_data["empty"] is True
    assert content_data(material(), empty=True)["cycle_end"] == END.isoformat()


def test_windows_of_the_current_a_past_and_a_future_cycle() -> None:
    now = END + timedelta(hours=1)
    given = START.replace(microsecond=123000)  # the user's cycle is compared to the second
    windows, current = report_windows(Cycle.of("u1", START), Cycle.of("u1", given), now)
    assert current and windows.end == now and windows.previous_start == START - (now - START)
    past, current = report_windows(Cycle.of("u1", END), Cycle.of("u1", START), now)
    assert not current and past.end == END and past.previous_start == START - timedelta(days=7)
    with pytest.raises(PermanentError, match="starts after the user's current cycle"):
        report_windows(Cycle.of("u1", START), Cycle.of("u1", END), now)
