"""Fixtures for the job runtime tests: settings pointing at the test servers, in-process and subprocess workers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from agents.scripted_llm import ScriptedLLMServer
from jobs.runtime.keys import INTERACTIVE, QUEUES, health_key_pattern
from jobs.runtime.registry import JobTable
from jobs.runtime.resources import WorkerResources
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import Settings, load_settings
from tests.cli.runner import ROOT, clean_env
from tests.jobs.testjobs import TEST_JOBS

T = TypeVar("T")

FAST_ENV = {
    "ORRERY_POLL_DELAY_S": "0.01",
    "ORRERY_JOB_LEASE_S": "2",
    "ORRERY_HEALTH_CHECK_INTERVAL_S": "0.5",
    "ORRERY_SHUTDOWN_GRACE_S": "5",
    "ORRERY_LOG_FORMAT": "json",
    "ORRERY_PROJECTION_REFRESH_DELAY_S": "0",
}
"""Short intervals so the runtime's timings fit in test time."""


def _scripted_llm(request: pytest.FixtureRequest) -> pytest.Mark | None:
    mark: pytest.Mark | None = request.node.get_closest_marker("scripted_llm")
    return mark


@pytest.fixture
def llm_server(request: pytest.FixtureRequest) -> Iterator[ScriptedLLMServer]:
    """The scripted LLM over HTTP, answering the `answers` of the test's `scripted_llm` mark (KeyedAnswers) and
    whatever the test enqueues on it."""
    mark = _scripted_llm(request)
    with ScriptedLLMServer(keyed_answers=mark.kwargs.get("answers", ()) if mark else ()) as server:
        yield server


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Short runtime intervals; with a `scripted_llm` mark, the worker's LLM is `llm_server`, and the mark's other
    keywords are settings (`llm_timeout_s=5`)."""
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        poll_delay_s=0.01,
        job_lease_s=2,
        health_check_interval_s=0.5,
        shutdown_grace_s=5,
        projection_refresh_delay_s=0,  # a burst worker would wait out the debounce
        llm="scripted",  # by name, as a worker serving the LLM jobs requires; a test's own endpoint replaces it
    )
    mark = _scripted_llm(request)
    if mark is None:
        return settings
    server: ScriptedLLMServer = request.getfixturevalue("llm_server")
    changes = {name: value for name, value in mark.kwargs.items() if name != "answers"}
    unknown = sorted(set(changes) - set(Settings.model_fields))
    assert not unknown, f"scripted_llm mark: not settings: {unknown}"
    return settings.model_copy(
        update={"openai_base_url": server.base_url, "openai_api_key": SecretStr("test-key"), **changes}
    )


@pytest.fixture
async def resources(settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis) -> WorkerResources:
    return WorkerResources(settings, pool, redis_client, "test-host:1", jobs=TEST_JOBS)


class BurstRunner:
    """Runs an in-process burst worker over `jobs` (TEST_JOBS unless a test swaps a job for a variant)."""

    def __init__(self, settings: Settings, database_url: str, redis_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.jobs: JobTable = TEST_JOBS

    async def __call__(self, queues: tuple[str, ...] = QUEUES, timeout: float = 120) -> None:
        """Until the burst worker exits. `timeout` bounds a stall, not the run: the worker is stopped (and the test
        fails) only when the ledger has not moved for that long, so a loaded machine slows a test down instead of
        failing it, while a worker that hangs still fails it. It is generous because the first worker of a test
        process loads the local embedding model before it takes work (seconds to a minute on a busy machine)."""
        options = WorkerOptions(queues=queues, concurrency=4, burst=True)
        run = asyncio.ensure_future(run_workers(self.settings, self.database_url, self.redis_url, options, self.jobs))
        conn = await asyncpg.connect(self.database_url)
        try:
            await wait_progressing(
                lambda: _ledger_mark(conn, run),
                lambda mark: mark[0],
                stall_s=timeout,
                interval=0.05,
                what="the burst worker",
            )
        finally:
            await conn.close()
            if not run.done():
                run.cancel()
        await run  # its own exception, if it failed


async def _ledger_mark(conn: asyncpg.Connection, run: asyncio.Future[None]) -> tuple[bool, Any]:
    """(the worker has exited, the ledger's latest change): what a burst's progress is measured by."""
    if run.done():
        return True, None
    return False, await conn.fetchval("SELECT (count(*), max(updated_at))::text FROM runtime.job_runs")


@pytest.fixture
def run_burst(settings: Settings, database_url: str, redis_url: str) -> BurstRunner:
    """Run an in-process burst worker until no job is due within its horizon (retries included)."""
    return BurstRunner(settings, database_url, redis_url)


def cli_env(database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The whole environment of a `run.py` subprocess on the test servers, with the runtime's short intervals and
    the scripted LLM (asked for by name, as a worker requires) unless `extra` names an endpoint."""
    llm = {} if {"OPENAI_BASE_URL", "OPENAI_API_KEY"} & set(extra) else {"ORRERY_LLM": "scripted"}
    return clean_env(
        **FAST_ENV, **llm, DATABASE_URL=database_url, REDIS_URL=redis_url, ORRERY_DATA_DIR=str(data_dir), **extra
    )


def with_endpoint(env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """`env` plus `extra`; an LLM endpoint in `extra` replaces the scripted LLM of cli_env."""
    merged = {**env, **extra}
    if {"OPENAI_BASE_URL", "OPENAI_API_KEY"} & set(extra):
        merged.pop("ORRERY_LLM", None)
    return merged


class WorkerProcesses:
    """`run.py worker` subprocesses, stopped (SIGKILL) at teardown if a test left them running."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"worker-{len(self.procs)}.log").open("wb")
        command = [sys.executable, str(ROOT / "run.py"), "worker", *args]
        env = with_endpoint(self.env, extra_env)
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, index: int) -> str:
        return (self.tmp_path / f"worker-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def workers(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    group = WorkerProcesses(cli_env(database_url, redis_url, tmp_path), tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


async def wait_for_workers(client: aioredis.Redis, count: int, timeout: float = 180, queue: str = INTERACTIVE) -> None:
    """Until `count` workers report on `queue` that they take work: polling, and done warming up (a worker loads the
    local embedding model first, which takes from seconds to a minute on a busy machine; the deadline is for a
    worker that never comes, not a size for a quiet machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        keys = [k async for k in client.scan_iter(match=health_key_pattern(queue))]
        lines = [line.decode() for line in await client.mget(keys) if line] if keys else []
        if sum(line.startswith("ok") for line in lines) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} workers came up in {timeout} s")


async def wait_progressing(
    measure: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    stall_s: float = 30,
    limit_s: float = 1800,
    interval: float = 0.1,
    what: str = "the work",
) -> T:
    """Poll `measure()` until `done(value)`; returns the value. Waits on progress, not on a wall clock sized for a
    quiet machine: it fails only when the value has not changed for `stall_s` (nothing moves: a real hang or a lost
    job), or after `limit_s` in all (a bound far past any loaded machine). `measure` should count something that
    only grows while the work goes on (jobs finished, rows written)."""
    loop = asyncio.get_running_loop()
    began = last_change = loop.time()
    value = await measure()
    while not done(value):
        now = loop.time()
        if now - last_change > stall_s or now - began > limit_s:
            stalled = f"no progress for {stall_s:g} s" if now - last_change > stall_s else f"{limit_s:g} s in all"
            raise AssertionError(f"{what} did not finish ({stalled}): last seen {value!r}")
        await asyncio.sleep(interval)
        seen = await measure()
        if seen != value:
            value, last_change = seen, loop.time()
    return value


async def wait_until(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
