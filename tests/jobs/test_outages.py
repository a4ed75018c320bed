"""The worker under store outages, supervised processes, failed job tasks and burst's horizon.

Redis outages use a Redis server of the test's own (stopped and started again in a tmp dir) so other tests keep
theirs; the Postgres outage restarts the session's embedded Postgres, which no other test uses meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
import structlog.testing
from arq.connections import RedisSettings
from arq.connections import create_pool as create_arq_pool

from jobs.diagnostics import ECHO
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, health_key_pattern, queue_key
from jobs.runtime.outage import POSTGRES, StoreWatch
from jobs.runtime.resources import WorkerResources
from jobs.runtime.worker import WorkerOptions, build_worker
from store import embedded, ledger
from store.postgres import connect, create_pool
from tests.cli.runner import run_cli
from tests.conftest import with_database
from tests.jobs.conftest import WorkerProcesses, cli_env, wait_for_workers, wait_until
from tests.jobs.testjobs import TEST_JOBS


@dataclass
class OwnRedis:
    """A Redis server only this test talks to, so it can be stopped without hurting the rest of the session."""

    directory: Path
    url: str

    def stop(self) -> None:
        assert embedded.stop_redis(self.directory)

    def start(self) -> None:
        assert embedded.start_redis(self.directory) == self.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    directory = tmp_path / "own-redis"
    server = OwnRedis(directory, embedded.start_redis(directory))
    try:
        yield server
    finally:
        embedded.stop_redis(directory)


async def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not exit within {timeout} s")
        await asyncio.sleep(0.05)
    return proc.returncode


async def _succeeded(pool: asyncpg.Pool, job_id: str, timeout: float = 20) -> None:
    async def check() -> bool:
        run = await ledger.latest_run(pool, job_id)
        return run is not None and run.state == "succeeded"

    await wait_until(check, timeout=timeout)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_worker_rides_out_a_redis_outage_and_runs_every_job(
    database_url: str, pool: asyncpg.Pool, own_redis: OwnRedis, tmp_path: Path
) -> None:
    group = WorkerProcesses(cli_env(database_url, own_redis.url, tmp_path, ORRERY_OUTAGE_TOLERANCE_S="60"), tmp_path)
    try:
        proc = group.start("--queue", INTERACTIVE)
        client = aioredis.Redis.from_url(own_redis.url)
        await wait_for_workers(client, 1)
        before = await enqueue(client, pool, ECHO, {"mark": "before"})
        await _succeeded(pool, before.job_id)
        due_during = await enqueue(client, pool, ECHO, {"mark": "during"}, defer_by=timedelta(seconds=1))
        await client.aclose()

        own_redis.stop()
        await asyncio.sleep(5)
        assert proc.poll() is None, group.log(0)
        own_redis.start()

        client = aioredis.Redis.from_url(own_redis.url)
        after = await enqueue(client, pool, ECHO, {"mark": "after"})
        await _succeeded(pool, due_during.job_id)
        await _succeeded(pool, after.job_id)
        await wait_for_workers(client, 1)  # the health key is written again
        await client.aclose()
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 20) == 0, group.log(0)
        events = [line["event"] for line in _json_lines(group.log(0))]
        assert "store unreachable; not claiming jobs until it answers" in events
        assert "store reachable again; claiming resumes" in events
    finally:
        group.stop_all()


async def test_a_redis_outage_past_the_tolerance_ends_the_worker_with_one_line(
    database_url: str, own_redis: OwnRedis, tmp_path: Path
) -> None:
    group = WorkerProcesses(cli_env(database_url, own_redis.url, tmp_path, ORRERY_OUTAGE_TOLERANCE_S="2"), tmp_path)
    try:
        proc = group.start("--queue", INTERACTIVE)
        client = aioredis.Redis.from_url(own_redis.url)
        await wait_for_workers(client, 1)
        await client.aclose()

        own_redis.stop()
        stopped = time.monotonic()
        code = await _exit_code(proc, 20)
        took = time.monotonic() - stopped

        log = group.log(0)
        assert code == 1, log
        assert took >= 2, f"exited {took:.1f} s into the outage, before the 2 s tolerance"
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, log
        assert "Redis at unix://" in errors[0] and "ORRERY_OUTAGE_TOLERANCE_S=2" in errors[0]
        assert "Traceback" not in log
    finally:
        group.stop_all()


@pytest.fixture
async def restartable_database(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A migrated database whose admin connections are opened per use, so they outlive a Postgres restart."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await admin.close()
    yield with_database(server_dsn, name)
    admin = await connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="restarts the embedded Postgres")
async def test_a_worker_rides_out_a_postgres_restart_and_says_it_is_degraded(
    restartable_database: str, redis_url: str, redis_client: aioredis.Redis, stack_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(restartable_database, redis_url, tmp_path, ORRERY_OUTAGE_TOLERANCE_S="60")
    group = WorkerProcesses(env, tmp_path)
    pool = await create_pool(restartable_database)
    try:
        proc = group.start("--queue", INTERACTIVE)
        await wait_for_workers(redis_client, 1)
        queued = await enqueue(redis_client, pool, ECHO, {"mark": "pg"}, defer_by=timedelta(seconds=1))
        await pool.close()

        assert embedded.stop_postgres(stack_dir)
        try:

            async def degraded() -> bool:
                keys = [key async for key in redis_client.scan_iter(match=health_key_pattern(INTERACTIVE))]
                values = [await redis_client.get(key) for key in keys]
                return any(value and value.startswith(b"degraded: Postgres unreachable") for value in values)

            await wait_until(degraded, timeout=10)
            health = run_cli("health", "--queue", INTERACTIVE, env=env)
            assert health.returncode == 1 and "degraded" in health.stderr, health.stdout + health.stderr
            await asyncio.sleep(2)  # the deferred job falls due while Postgres is away
            assert proc.poll() is None, group.log(0)
        finally:
            _restart_postgres(stack_dir)

        pool = await create_pool(restartable_database)
        await _succeeded(pool, queued.job_id, timeout=30)
        assert proc.poll() is None

        async def healthy() -> bool:  # the health key is rewritten every ORRERY_HEALTH_CHECK_INTERVAL_S
            return run_cli("health", "--queue", INTERACTIVE, env=env).returncode == 0

        await wait_until(healthy, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 20) == 0, group.log(0)
        events = [line["event"] for line in _json_lines(group.log(0))]
        assert "store unreachable; not claiming jobs until it answers" in events
    finally:
        group.stop_all()
        await pool.close()


def _restart_postgres(stack_dir: Path) -> None:
    """pgserver keeps one handle per data directory in this process; ask it to start the server again."""
    from pgserver import get_server  # type: ignore[attr-defined]

    get_server(stack_dir / "postgres", cleanup_mode=None).ensure_postgres_running()


async def _health_pids(client: aioredis.Redis) -> set[int]:
    keys = [key.decode() async for key in client.scan_iter(match=health_key_pattern(INTERACTIVE))]
    return {int(key.rsplit(":", 1)[-1]) for key in keys}


async def test_processes_replace_a_killed_child_and_still_drain_on_sigterm(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    proc = workers.start("--processes", "2", "--queue", INTERACTIVE, ORRERY_WORKER_RESTART_DELAY_S="0.2")
    await wait_for_workers(redis_client, 2)
    first = await _health_pids(redis_client)
    victim = min(first)

    os.kill(victim, signal.SIGKILL)

    async def replaced() -> set[int]:
        return (await _health_pids(redis_client)) - first

    new = await wait_until(replaced, timeout=30)
    assert proc.poll() is None
    result = await enqueue(redis_client, pool, ECHO, {"mark": "after-kill"})
    await _succeeded(pool, result.job_id)

    proc.send_signal(signal.SIGTERM)
    assert await _exit_code(proc, 20) == 0, workers.log(0)
    log = workers.log(0)
    assert "worker process died; restarting it" in log and "worker process restarted" in log
    for pid in new | (first - {victim}):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_child_that_dies_on_every_start_is_given_up_with_one_line(
    database_url: str, server_dsn: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """The database is dropped under running children: each waits out its outage tolerance and exits, and every
    restart dies on start (the database does not exist), until the parent gives up. (A database missing before the
    start is refused by the parent itself, with one line: the next test.)"""
    env = cli_env(
        database_url, redis_url, tmp_path, ORRERY_WORKER_RESTART_DELAY_S="0.05", ORRERY_OUTAGE_TOLERANCE_S="1"
    )
    group = WorkerProcesses(env, tmp_path)
    try:
        proc = group.start("--processes", "2", "--queue", INTERACTIVE)
        await wait_for_workers(redis_client, 2, timeout=90)
        admin = await connect(server_dsn)
        try:
            name = urlsplit(database_url).path.lstrip("/")
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        code = await _exit_code(proc, 120)
        log = group.log(0)
        assert code == 1, log
        given_up = [line for line in _json_lines(log) if "not restarting it again" in str(line["event"])]
        assert len(given_up) == 1, log
        assert "died 5 times in a row" in str(given_up[0]["event"])
        assert "does not exist" in log  # the children's own line says why
    finally:
        group.stop_all()


def test_a_missing_database_is_refused_before_any_child_starts(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    missing = with_database(database_url, "no_such_database")
    env = cli_env(missing, redis_url, tmp_path)
    result = run_cli("worker", "--processes", "2", "--queue", INTERACTIVE, env=env)
    assert result.returncode == 2 and "database does not exist" in result.stderr, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


async def test_burst_leaves_a_far_future_job_queued_and_says_so(
    database_url: str, redis_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    far = datetime(2031, 1, 1, tzinfo=UTC)
    later = await enqueue(redis_client, pool, ECHO, {"mark": "later"}, run_at=far)
    now = await enqueue(redis_client, pool, ECHO, {"mark": "now"})
    env = cli_env(database_url, redis_url, tmp_path)

    started = time.monotonic()
    done = run_cli("worker", "--burst", "--queue", INTERACTIVE, timeout=60, env=env)
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    assert took < 20, f"burst took {took:.1f} s"
    run = await ledger.latest_run(pool, now.job_id)
    assert run is not None and run.state == "succeeded"
    assert await redis_client.zscore(queue_key(INTERACTIVE), later.job_id) is not None
    lines = [line for line in _json_lines(done.stdout + done.stderr) if "burst finished" in str(line["event"])]
    assert len(lines) == 1
    assert "interactive 1 (next due 2031-01-01T00:00:00Z)" in str(lines[0]["event"])


async def test_a_job_task_that_raises_is_logged_and_the_poll_loop_goes_on(
    resources: WorkerResources, redis_url: str, database_url: str
) -> None:
    watch = StoreWatch(redis_client=resources.redis, redis_url=redis_url, database_url=database_url, tolerance_s=60)
    options = WorkerOptions(queues=(INTERACTIVE,), concurrency=2)
    worker = build_worker(INTERACTIVE, TEST_JOBS.all(), resources, redis_url=redis_url, options=options, watch=watch)
    worker._pool = await create_arq_pool(RedisSettings.from_dsn(redis_url))

    async def escaped() -> None:
        raise RuntimeError("raised by arq's own code around the job")

    task = asyncio.get_running_loop().create_task(escaped())
    await asyncio.sleep(0)
    worker.tasks["job-7"] = task
    try:
        with structlog.testing.capture_logs() as logs:
            await worker._poll_iteration()
            await worker._poll_iteration()
    finally:
        await worker.pool.aclose()
    assert worker.tasks == {}
    failed = [entry for entry in logs if entry.get("job_id") == "job-7"]
    assert len(failed) == 1 and failed[0]["error_class"] == "RuntimeError", logs
    assert failed[0]["log_level"] == "error" and watch.healthy


async def test_a_job_task_cut_short_by_redis_pauses_claiming_without_a_traceback(
    resources: WorkerResources, redis_url: str, database_url: str
) -> None:
    watch = StoreWatch(redis_client=resources.redis, redis_url=redis_url, database_url=database_url, tolerance_s=60)
    options = WorkerOptions(queues=(INTERACTIVE,), concurrency=2)
    worker = build_worker(INTERACTIVE, TEST_JOBS.all(), resources, redis_url=redis_url, options=options, watch=watch)
    worker._pool = await create_arq_pool(RedisSettings.from_dsn(redis_url))

    async def cut_short() -> None:
        raise redis.exceptions.ConnectionError("Error 2 connecting to /tmp/redis.sock. No such file or directory.")

    task = asyncio.get_running_loop().create_task(cut_short())
    await asyncio.sleep(0)
    worker.tasks["job-8"] = task
    try:
        with structlog.testing.capture_logs() as logs:
            await worker._poll_iteration()
            assert not watch.healthy  # nothing is claimed until a probe hears Redis again
            await watch.probe()
    finally:
        await worker.pool.aclose()
    assert watch.healthy and worker.tasks == {}
    cut = [entry for entry in logs if entry.get("job_id") == "job-8"]
    assert len(cut) == 1 and cut[0]["log_level"] == "warning" and "exc_info" not in cut[0], logs


async def test_a_probe_that_fails_in_an_unlisted_way_is_an_outage_not_the_end_of_the_watch(
    redis_client: aioredis.Redis, redis_url: str, database_url: str
) -> None:
    """A server shutting down may raise an error class the watch does not list; the watch ended on it, the worker
    stopped with exit 0 and no word (seen in the Postgres restart fault test). It is the store not answering."""
    watch = StoreWatch(redis_client=redis_client, redis_url=redis_url, database_url=database_url, tolerance_s=60)

    async def unlisted() -> None:
        raise EOFError("the server closed the connection mid-handshake")

    await watch._probe(POSTGRES, unlisted, (OSError,))
    assert watch.is_away(POSTGRES) and not watch.healthy
    await watch.probe()  # both stores answer again
    assert watch.healthy
