"""The event loop a worker runs on: uvloop where it is installed (Linux and macOS), else asyncio's own.

Why: a worker spends most of its CPU between awaits (asyncpg and Redis round trips, the LLM client's HTTP), which
is the event loop's own work. On uvloop the same ingestions took 12% less worker CPU on this 2-core VM (an
interleaved A/B of bench/bench_ingest.py; docs/benchmarks.md), and ingestion throughput is CPU-bound once the LLM
answers fast. asyncpg, redis-py, aiohttp and arq all run on it unchanged. Where it is missing (Windows, or a build
without it) the worker runs as before; `ORRERY_EVENT_LOOP=asyncio` chooses asyncio's loop anyway (settings.py), for
comparing or ruling it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_name(choice: EventLoopChoice) -> Literal["asyncio", "uvloop"]:
    """The loop `choice` runs on here: "uvloop" or "asyncio"; uvloop chosen but missing is an error."""
    if choice == "asyncio":
        return "asyncio"
    if uvloop_available():
        return "uvloop"
    if choice == "uvloop":
        raise RuntimeError("ORRERY_EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)")
    return "asyncio"


def run(coro: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """asyncio.run(coro) on the loop `choice` names."""
    if loop_name(choice) == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def running_loop_name() -> str:
    """The running loop's kind, uvloop or asyncio (the worker's start line names it)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
