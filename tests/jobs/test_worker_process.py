"""Workers as real `run.py worker` processes: signals, crashes, cron across processes, health and the CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO, mark_keys
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, health_key_pattern, job_key, queue_key, retry_key
from store import ledger
from tests.cli.runner import run_cli
from tests.jobs.conftest import WorkerProcesses, cli_env, wait_for_workers, wait_until


async def _started(redis_client: aioredis.Redis, mark: str, count: int = 1) -> None:
    key = mark_keys(mark)[0]

    async def check() -> bool:
        return int(await redis_client.get(key) or 0) >= count

    await wait_until(check)


async def _exit(proc: object, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError("worker did not exit")
        await asyncio.sleep(0.05)
    code: int = proc.returncode  # type: ignore[attr-defined]
    return code


async def test_sigterm_drains_running_jobs_and_takes_no_new_ones(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    proc = workers.start()
    await wait_for_workers(redis_client, 1)
    running = await enqueue(redis_client, pool, ECHO, {"sleep_s": 1.5, "mark": "m-7f3e"})
    await _started(redis_client, "m-7f3e")

    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    late = await enqueue(redis_client, pool, ECHO, {"mark": "late"})

    assert await _exit(proc) == 0, workers.log(0)
    lines = [json.loads(line) for line in workers.log(0).splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if line.get("job_id") == running.job_id]
    assert {line["event"] for line in job_lines} == {"job started", "job succeeded"}
    assert all(line["job_name"] == "diag.echo" and line["attempt"] == 1 for line in job_lines)
    assert "m-7f3e" not in workers.log(0)  # arguments are never logged
    finished = await ledger.latest_run(pool, running.job_id)
    assert finished is not None and finished.state == "succeeded"
    untouched = await ledger.latest_run(pool, late.job_id)
    assert untouched is not None and untouched.state == "queued"
    assert await redis_client.zscore(queue_key("interactive"), late.job_id) is not None


async def test_sigterm_past_the_grace_hands_the_job_back(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    proc = workers.start(ORRERY_SHUTDOWN_GRACE_S="0.3")
    await wait_for_workers(redis_client, 1)
    result = await enqueue(redis_client, pool, ECHO, {"sleep_s": 30, "mark": "long"})
    await _started(redis_client, "long")

    proc.send_signal(signal.SIGTERM)

    assert await _exit(proc) == 0, workers.log(0)
    run = await ledger.latest_run(pool, result.job_id)
    assert run is not None and (run.state, run.error_class) == ("queued", "Interrupted")
    assert await redis_client.exists(job_key(result.job_id)) == 1
    assert await redis_client.zscore(queue_key("interactive"), result.job_id) is not None
    assert int(await redis_client.get(retry_key(result.job_id)) or 0) == 0  # the hand-back used no attempt


async def test_sigkilled_workers_job_is_finished_by_another_within_the_lease(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    procs = [workers.start(), workers.start()]
    await wait_for_workers(redis_client, 2)
    result = await enqueue(redis_client, pool, ECHO, {"sleep_s": 1.0, "mark": "crash"})
    await _started(redis_client, "crash")
    first = await ledger.latest_run(pool, result.job_id)
    assert first is not None and first.worker_id is not None
    victim = next(p for p in procs if first.worker_id.endswith(f":{p.pid}"))

    victim.send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)

    async def finished() -> object:
        run = await ledger.latest_run(pool, result.job_id)
        return run if run is not None and run.state == "succeeded" else None

    run = await wait_until(finished, timeout=20)
    assert run.attempt == 2 and run.worker_id != first.worker_id
    # ORRERY_JOB_LEASE_S=2 plus the poll delay, with slack for a loaded machine; the job's own timeout is 60 s
    assert (run.started_at - killed_at).total_seconds() <= 2 + 2.0
    started_key, finished_key = mark_keys("crash")
    assert int(await redis_client.get(started_key)) == 2  # two attempts began…
    assert await redis_client.smembers(finished_key) == {result.job_id.encode()}  # type: ignore[misc]  # …one effect


async def test_cron_slot_fires_once_with_two_workers(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    every_second = json.dumps({"diag.echo": "* * * * * *"})
    started = datetime.now(UTC)
    procs = [workers.start(ORRERY_CRON=every_second), workers.start(ORRERY_CRON=every_second)]
    await wait_for_workers(redis_client, 2)
    await asyncio.sleep(3.5)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert await _exit(proc) == 0

    rows = await pool.fetch(
        "SELECT job_id, count(*) AS runs, min(state) AS state FROM runtime.job_runs "
        "WHERE job_name = 'diag.echo' GROUP BY job_id ORDER BY job_id"
    )
    runs = [dict(r) for r in rows]
    assert all(r["runs"] == 1 for r in runs), runs  # no slot ran twice
    # A slot fired as the stop signal arrived is left queued for the next worker (seen in CI when the signal landed
    # on a second boundary): only the last slot may be, and it must still be in the queue, not lost.
    *earlier, last = runs
    assert len(runs) >= 3 and all(r["state"] == "succeeded" for r in earlier), runs
    if last["state"] != "succeeded":
        assert last["state"] == "queued", runs
        assert await redis_client.zscore(queue_key(ECHO.queue), last["job_id"]) is not None, runs
        assert await redis_client.exists(job_key(last["job_id"])), runs
    slots = [datetime.strptime(r["job_id"].split("@")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) for r in rows]
    assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(slots))
    assert slots[0] > started  # nothing fired for a slot before the workers started


async def test_health_and_the_jobs_cli(
    database_url: str, redis_url: str, redis_client: aioredis.Redis, workers: WorkerProcesses, tmp_path: Path
) -> None:
    env = cli_env(database_url, redis_url, tmp_path)
    assert run_cli("health", env=env).returncode == 1

    workers.start()
    await wait_for_workers(redis_client, 1)
    health = run_cli("health", env=env)
    assert health.returncode == 0, health.stderr

    ok = run_cli("trigger", "diag.echo", "--arg", "sleep_s=0.1", "--wait", "--timeout", "20", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "succeeded attempt 1/3" in ok.stdout

    dead = run_cli("trigger", "diag.echo", "--arg", "fail_mode=permanent", "--job-id", "doomed", "--wait", env=env)
    assert dead.returncode == 1 and "dead" in dead.stdout and "PermanentError" in dead.stdout

    failed = run_cli("jobs", "failed", "--json", env=env)
    assert [r["job_id"] for r in json.loads(failed.stdout)] == ["doomed"]

    retried = run_cli("jobs", "retry", "doomed", env=env)
    assert retried.returncode == 0 and "enqueued diag.echo" in retried.stdout, retried.stderr

    async def dead_twice() -> bool:
        shown = json.loads(run_cli("jobs", "show", "doomed", "--json", env=env).stdout)
        return [r["state"] for r in shown["runs"]] == ["dead", "dead"]

    await wait_until(dead_twice, timeout=20, interval=0.2)

    queues = json.loads(run_cli("jobs", "queues", "--json", env=env).stdout)
    assert {q["queue"]: q["live_workers"] for q in queues} == {"interactive": 1, "batch": 1}

    invalid = run_cli("trigger", "diag.echo", "--arg", "sleep_s=later", env=env)
    assert invalid.returncode == 2 and "sleep_s" in invalid.stderr

    plan = json.loads(run_cli("trigger", "sweep_timeouts", "--in", "10m", "--dry-run", "--json", env=env).stdout)
    assert plan["job_id"] == "sweep_timeouts" and plan["queue"] == "interactive" and plan["dry_run"] is True

    table = {row["name"]: row for row in json.loads(run_cli("jobs", "list", "--json", env=env).stdout)}
    assert table["sweep_timeouts"]["schedule"] == "* * * * *" and table["sweep_timeouts"]["next_run"].endswith("Z")
    assert table["diag.echo"]["next_run"] is None


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _worker_pids(redis_client: aioredis.Redis) -> list[int]:
    keys = [key.decode() async for key in redis_client.scan_iter(match=health_key_pattern(INTERACTIVE))]
    return sorted(int(key.rsplit(":", 1)[-1]) for key in keys)


async def test_processes_share_the_queues_and_drain_together_on_sigterm(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    proc = workers.start("--processes", "2", "--concurrency", "1")
    await wait_for_workers(redis_client, 2)
    assert proc.pid not in await _worker_pids(redis_client)  # the parent supervises, the children work
    results = [await enqueue(redis_client, pool, ECHO, {"sleep_s": 1.0, "mark": "pair"}) for _ in range(2)]
    await _started(redis_client, "pair", count=2)  # one job per process: each runs one at a time

    proc.send_signal(signal.SIGTERM)

    assert await _exit(proc) == 0, workers.log(0)
    runs = [await ledger.latest_run(pool, result.job_id) for result in results]
    assert [run.state if run else None for run in runs] == ["succeeded", "succeeded"]
    assert len({run.worker_id for run in runs if run}) == 2
    for pid in {int(run.worker_id.rsplit(":", 1)[-1]) for run in runs if run and run.worker_id}:
        assert await _gone(pid)  # the parent exits only after every child


async def test_processes_must_be_at_least_one(workers: WorkerProcesses) -> None:
    proc = workers.start("--processes", "0")
    assert await _exit(proc) == 2
    assert "--processes" in workers.log(0)


async def test_a_worker_with_every_slot_busy_stays_healthy(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    """A full worker waits for a free slot at most a second at a time, then refreshes its health key, so the key
    (refreshed every 0.5 s here, lapsing 1.5 s after a missed refresh) never lapses while a long job holds the slot."""
    workers.start("--concurrency", "1", "--queue", INTERACTIVE)
    await wait_for_workers(redis_client, 1)
    await enqueue(redis_client, pool, ECHO, {"sleep_s": 4, "mark": "long-busy"})
    await _started(redis_client, "long-busy")

    for _ in range(16):
        assert await _worker_pids(redis_client), "the health key lapsed while every slot was busy"
        await asyncio.sleep(0.2)


async def test_processes_run_jobs_that_use_resources(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, workers: WorkerProcesses
) -> None:
    """An ingestion (LLM, embedder, vector store) through `worker --processes 2 --burst`: the children get the job
    table pickled, and its resources must still be the ones the handlers ask for."""
    from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
    from jobs.ingestion import INGEST
    from store.repos import conversations, users

    user = await users.create_user(pool, "proc-user", email="proc@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k today!")
    with ScriptedLLMServer() as llm:
        llm.enqueue(ScriptedReply.json(load_sample_answers()[0].answer))
        job = await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
        proc = workers.start("--processes", "2", "--burst", OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="k")
        assert await _exit(proc, timeout=120) == 0, workers.log(0)
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and run.state == "succeeded", (run, workers.log(0))
