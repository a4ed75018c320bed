"""The worker's event loop: uvloop where installed unless settings say asyncio, named in the worker's start line."""

from __future__ import annotations

import asyncio
import json

import pytest

from jobs.runtime import loop as event_loop
from tests.jobs.conftest import WorkerProcesses


async def _running() -> str:
    await asyncio.sleep(0)
    return event_loop.running_loop_name()


def test_auto_runs_on_uvloop_where_installed_and_asyncio_when_asked() -> None:
    assert event_loop.uvloop_available()  # a project dependency on Linux
    assert event_loop.run(_running(), "auto") == "uvloop"
    assert event_loop.run(_running(), "uvloop") == "uvloop"
    assert event_loop.run(_running(), "asyncio") == "asyncio"


def test_uvloop_asked_for_but_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_loop, "uvloop_available", lambda: False)
    assert event_loop.loop_name("auto") == "asyncio"  # missing: the worker runs as before
    with pytest.raises(RuntimeError, match="ORRERY_EVENT_LOOP=uvloop but uvloop is not installed"):
        event_loop.loop_name("uvloop")


@pytest.mark.parametrize(
    ("processes", "setting", "expected"), [("1", None, "uvloop"), ("2", None, "uvloop"), ("2", "asyncio", "asyncio")]
)
def test_workers_say_which_loop_they_run_on(
    workers: WorkerProcesses, processes: str, setting: str | None, expected: str
) -> None:
    """Both ways a worker runs (in the command's own process, or as `--processes` children) take the setting."""
    proc = workers.start("--processes", processes, "--burst", **({"ORRERY_EVENT_LOOP": setting} if setting else {}))
    assert proc.wait(180) == 0, workers.log(0)
    lines = [json.loads(text) for text in workers.log(0).splitlines() if text.startswith("{")]
    started = [line["event_loop"] for line in lines if line.get("event") == "worker started"]
    assert started == [expected] * int(processes), workers.log(0)
