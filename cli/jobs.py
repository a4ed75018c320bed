"""`trigger` and `jobs …`: enqueue a job by hand, list the job table, read the ledger, revive dead letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import typer
from rich.table import Table

from cli.common import CommandError, backends, console, fail, run_async, settings
from cli.job_args import ArgumentParseError, collect_args, parse_at, parse_duration, parse_job_id, parse_wait_timeout
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime import wire
from jobs.runtime.enqueue import (
    EnqueueResult,
    JobArgumentsError,
    NotRetryableError,
    enqueue,
    resolve_run_at,
    retry_dead,
    validate_args,
)
from jobs.runtime.keys import (
    QUEUES,
    UNRECORDED_DEAD_KEY,
    health_key_pattern,
    in_progress_key,
    job_key,
    queue_key,
)
from jobs.runtime.registry import JobSpec, UnknownJobError
from jobs.runtime.scheduler import schedules
from store import ledger
from store.ledger import FINAL_STATES, JobRun
from store.postgres import connect
from store.redis import connect_redis

EXIT_JOB_FAILED = 1
"""The job checked (`trigger --wait`) ended dead. Exit 2 (cli.common.EXIT_USAGE) is for bad input, unknown ids too."""
EXIT_WAIT_TIMEOUT = 3

jobs_app = typer.Typer(help="The job table, the ledger and dead letters.", no_args_is_help=True)


@asynccontextmanager
async def _stores() -> AsyncIterator[tuple[asyncpg.Connection, aioredis.Redis]]:
    found = backends()
    conn = await connect(found.database_url)
    try:
        client = await connect_redis(found.redis_url)
        try:
            yield conn, client
        finally:
            await client.aclose()
    finally:
        await conn.close()


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else "-"


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


# --- trigger -----------------------------------------------------------------------------------------------------


def trigger_command(
    job: str = typer.Argument(..., help="Job name (see `jobs list`)."),
    arg: list[str] = typer.Option([], "--arg", "-a", help="key=value; the value is JSON when it parses, else text."),
    args_json: str | None = typer.Option(None, "--args-json", help="All arguments as one JSON object."),
    args_file: Path | None = typer.Option(None, "--args-file", help="A file holding a JSON object of arguments."),
    job_id: str | None = typer.Option(None, "--job-id", help="Job id (default: the job's dedupe key, else random)."),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Queue to use instead of the job's own."),
    delay: str | None = typer.Option(None, "--in", help="Start after this long: 30s, 10m, 1h30m."),
    at: str | None = typer.Option(None, "--at", help="Start at this ISO time (UTC unless it has an offset)."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run; exit 1 if it ends dead."),
    timeout: float = typer.Option(300.0, "--timeout", help="With --wait: give up waiting after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show what would be enqueued."),
) -> None:
    """Enqueue a job by hand; its arguments are validated before anything is written. Prints the job id."""
    now = datetime.now(UTC)
    try:
        spec = JOBS.get(job)
        args = collect_args(arg, args_json, args_file)
        defer_by = parse_duration(delay) if delay is not None else None
        run_at = parse_at(at, now) if at is not None else None
        job_id = parse_job_id(job_id) if job_id is not None else None
        timeout = parse_wait_timeout(timeout)
        model = validate_args(spec, args)
        when = resolve_run_at(now, defer_by=defer_by, run_at=run_at)
    except (UnknownJobError, ArgumentParseError, JobArgumentsError) as exc:
        fail(str(exc))
    if queue is not None and queue not in QUEUES:
        fail(f"unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    if dry_run:
        plan = {
            "job_id": job_id or spec.job_id_for(model) or spec.id_pattern or "(random id)",
            "name": spec.name,
            "queue": queue or spec.queue,
            "run_at": _iso(when),
            "args": model.model_dump(mode="json"),
            "dry_run": True,
        }
        if as_json:
            _print_json(plan)
        else:
            console.print(f"would enqueue {plan['name']} as {plan['job_id']} on {plan['queue']} at {plan['run_at']}")
            console.print(f"args {json.dumps(plan['args'])}", highlight=False)
        return
    code = run_async(_trigger(spec, args, job_id, queue, when, wait, timeout, as_json))
    if code:
        raise typer.Exit(code)


async def _trigger(
    spec: JobSpec,
    args: dict[str, Any],
    job_id: str | None,
    queue: str | None,
    when: datetime,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> int:
    async with _stores() as (conn, client):
        try:
            result = await enqueue(client, conn, spec, args, job_id=job_id, queue=queue, run_at=when)
        except JobArgumentsError as exc:
            raise CommandError(str(exc)) from None
        if not wait:
            _report_enqueue(result, as_json)
            return 0
        if not as_json:
            _report_enqueue(result, as_json)
        run = await _follow(conn, result, timeout, as_json)
    if run is None or run.state not in FINAL_STATES:
        state = run.state if run else "unknown"
        message = f"job {result.job_id} still {state} after {timeout:g} s"
        if as_json:
            _print_json({**_result_json(result), "state": state, "timed_out": True})
        else:
            console.print(f"[yellow]{message}[/]")
        return EXIT_WAIT_TIMEOUT
    if as_json:
        _print_json({**_result_json(result), "run": _run_json(run)})
    return 0 if run.state == "succeeded" else EXIT_JOB_FAILED


def _result_json(result: EnqueueResult) -> dict[str, Any]:
    return {**asdict(result), "run_at": _iso(result.run_at)}


def _report_enqueue(result: EnqueueResult, as_json: bool) -> None:
    if as_json:
        _print_json(_result_json(result))
    elif result.enqueued:
        console.print(result.job_id, highlight=False)
        console.print(f"enqueued {result.name} on {result.queue} for {_iso(result.run_at)}", highlight=False)
    else:
        console.print(result.job_id, highlight=False)
        console.print(f"not enqueued: {result.job_id} is already queued or running", highlight=False)


async def _follow(conn: asyncpg.Connection, result: EnqueueResult, timeout: float, quiet: bool) -> JobRun | None:
    """Poll the run's ledger row, printing each change, until it is final or the timeout passes."""
    deadline = time.monotonic() + timeout
    seen: tuple[str, int, str | None] | None = None
    run: JobRun | None = None
    while time.monotonic() < deadline:
        if result.run_id is not None:
            run = await ledger.get_run(conn, result.run_id)
        else:
            run = await ledger.latest_run(conn, result.job_id)
        if run is not None:
            now = (run.state, run.attempt, run.error)
            if now != seen and not quiet:
                console.print(_describe_state(run), highlight=False)
            seen = now
            if run.state in FINAL_STATES:
                return run
        await asyncio.sleep(0.1)
    return run


def _describe_state(run: JobRun) -> str:
    text = f"{run.state:<9} attempt {run.attempt}/{run.max_tries}"
    if run.state == "succeeded":
        text += f" in {run.duration_ms} ms" + (f" {json.dumps(run.result)}" if run.result else "")
    elif run.error:
        text += f" {run.error_class}: {run.error}"
        if run.state in ("failed", "queued"):
            text += f" (next try {_iso(run.run_at)})"
    return text


# --- jobs list / failed / show / retry / queues -------------------------------------------------------------------


@jobs_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered job with its queue, limits and schedule (next run, UTC)."""
    now = datetime.now(UTC)
    specs = JOBS.all()
    try:
        scheduled = {job.spec.name: job.schedule for job in schedules(JOBS, settings().cron)}
    except ScheduleError as exc:
        fail(str(exc))
    rows: list[dict[str, Any]] = []
    for spec in specs:
        schedule = scheduled.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "queue": spec.queue,
                "timeout_s": spec.timeout_s,
                "max_tries": spec.max_tries,
                "backoff_s": spec.backoff_s,
                "dedupe_key": spec.id_pattern,
                "schedule": schedule.expression if schedule else None,
                "next_run": _iso(schedule.next_after(now)) if schedule else None,
                "description": spec.summary,
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table("job", "queue", "timeout", "tries", "backoff", "dedupe key", "schedule", "next run", "what it does")
    for row in rows:
        table.add_row(
            row["name"],
            row["queue"],
            f"{row['timeout_s']:g} s",
            str(row["max_tries"]),
            f"{row['backoff_s']:g} s",
            row["dedupe_key"] or "-",
            row["schedule"] or "-",
            row["next_run"] or "-",
            row["description"],
        )
    console.print(table)


def _run_json(run: JobRun) -> dict[str, Any]:
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(run).items()}


@jobs_app.command("failed")
def failed_command(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    job: str | None = typer.Option(None, "--job", help="Only this job name."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dead letters, newest first (a job retried since is no longer listed).

    Also those the ledger could not hold (a record with text Postgres refuses even escaped), kept in Redis under
    orrery:dead:unrecorded: listed after the table, and with `"in_ledger": false` in --json."""
    job = _checked_id(job, "--job") if job is not None else None

    async def _run() -> tuple[list[JobRun], list[dict[str, Any]]]:
        async with _stores() as (conn, client):
            runs = await ledger.dead_letters(conn, limit=limit, job_name=job)
            kept = await _unrecorded_dead(client, limit)
        return runs, [entry for entry in kept if job is None or entry.get("job_name") == job]

    runs, unrecorded = run_async(_run())
    if as_json:
        _print_json([{**_run_json(r), "in_ledger": True} for r in runs] + unrecorded)
        return
    if unrecorded:
        console.print(
            f"{len(unrecorded)} dead letter(s) the ledger could not hold, kept in Redis ({UNRECORDED_DEAD_KEY}):"
        )
        for entry in unrecorded:
            console.print(
                f"  {entry['job_id']} ({entry.get('job_name') or '?'}, {entry.get('queue') or '?'}) at "
                f"{entry.get('at') or '?'}: {entry.get('error_class')}: {entry.get('error')}",
                highlight=False,
                soft_wrap=True,
            )
    if not runs:
        console.print("no dead letters" + (" in the ledger" if unrecorded else ""))
        return
    table = Table("job id", "job", "tries", "error", "finished")
    for run in runs:
        table.add_row(
            run.job_id,
            run.job_name,
            f"{run.attempt}/{run.max_tries}",
            f"{run.error_class}: {run.error}",
            _iso(run.finished_at),
        )
    console.print(table)
    console.print("revive one with `run.py jobs retry JOB_ID`")


async def _unrecorded_dead(client: aioredis.Redis, limit: int) -> list[dict[str, Any]]:
    """The dead letters kept in Redis, newest first, as JSON objects; an entry that is not one is shown as such."""
    entries = []
    for raw in await client.lrange(UNRECORDED_DEAD_KEY, 0, limit - 1):  # type: ignore[misc]
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            entry = {"job_id": "?", "error_class": "Unreadable", "error": repr(raw)[:200]}
        record = entry.get("record")
        try:
            name = json.loads(record).get("f") if isinstance(record, str) else None
        except (ValueError, AttributeError):
            name = None
        entries.append({**entry, "job_name": name if isinstance(name, str) else None, "in_ledger": False})
    return entries


def _checked_id(text: str, option: str) -> str:
    try:
        return parse_job_id(text, option)
    except ArgumentParseError as exc:
        fail(str(exc))


@dataclass(frozen=True)
class RedisView:
    """A job as Redis holds it now, read without a worker: for a job the web app enqueued and no worker has started
    yet, this is all there is (its ledger row is written when a worker starts it)."""

    name: str | None
    args: Any
    queue: str | None
    """The queue whose sorted set holds the id (None: a record with no queue entry, which no worker will run)."""
    enqueued_at: datetime | None
    """The record's `et`."""
    run_at: datetime | None
    """The queue score: when the job may start (or retry)."""
    running: bool
    """A worker holds its lease."""
    problem: str | None
    """Why a worker will refuse the record (it becomes a NotRunnable dead letter), when it will."""

    @property
    def state(self) -> str:
        return "running" if self.running else "queued" if self.queue else "orphaned"


def _from_ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


async def _redis_view(client: aioredis.Redis, job_id: str) -> RedisView | None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(job_key(job_id))
        pipe.exists(in_progress_key(job_id))
        for each in QUEUES:
            pipe.zscore(queue_key(each), job_id)
        raw, running, *scores = await pipe.execute()
    if raw is None:
        return None
    queue = next((each for each, score in zip(QUEUES, scores, strict=True) if score is not None), None)
    score = scores[QUEUES.index(queue)] if queue is not None else None
    try:
        record, problem = wire.deserialize(raw), None
    except wire.RecordError as exc:
        record, problem = {}, str(exc)
    name = record.get("f")
    return RedisView(
        name=name if isinstance(name, str) else None,
        args=record.get("k"),
        queue=queue,
        enqueued_at=_from_ms(record.get("et")),
        run_at=_from_ms(score),
        running=bool(running),
        problem=problem,
    )


def _redis_json(view: RedisView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "state": view.state,
        "name": view.name,
        "queue": view.queue,
        "args": view.args,
        "enqueued_at": _iso(view.enqueued_at),
        "run_at": _iso(view.run_at),
        "problem": view.problem,
    }


def _describe_redis(view: RedisView | None) -> str:
    if view is None:
        return "no"
    if view.state == "orphaned":
        return "a record with no queue entry: no worker will run it (it expires on its own; re-enqueue it)"
    where = f"{view.state} on {view.queue}, enqueued {_iso(view.enqueued_at)}, runs at {_iso(view.run_at)}"
    return where + (f"; a worker will refuse it: {view.problem}" if view.problem else "")


@jobs_app.command("show")
def show_command(
    job_id: str = typer.Argument(..., help="The job id (e.g. ingest:CONVERSATION_ID)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every run of a job id, newest first, and where it is in Redis now (also a job enqueued by another program that
    no worker has started yet)."""
    job_id = _checked_id(job_id, "JOB_ID")

    async def _run() -> tuple[list[JobRun], RedisView | None]:
        async with _stores() as (conn, client):
            return await ledger.runs_of(conn, job_id), await _redis_view(client, job_id)

    runs, view = run_async(_run())
    if runs:
        name, queue, args = runs[0].job_name, runs[0].queue, runs[0].args
    elif view is not None:
        name, queue, args = view.name or "?", view.queue or "?", view.args
    else:
        fail(f"no job with id {job_id!r} in the ledger or in Redis (see `jobs failed` or `jobs queues`)")
    if as_json:
        runs_json = [_run_json(r) for r in runs]
        _print_json({"job_id": job_id, "in_redis": view is not None, "redis": _redis_json(view), "runs": runs_json})
        return
    console.print(f"[bold]{job_id}[/]  {name} on {queue}  args {json.dumps(args)}", highlight=False)
    console.print(f"in Redis: {_describe_redis(view)}", highlight=False)
    if not runs:
        console.print("no run in the ledger yet: no worker has started it (it was enqueued straight into Redis)")
        return
    table = Table("run", "state", "attempt", "enqueued", "started", "finished", "ms", "worker", "error / result")
    for run in runs:
        detail = f"{run.error_class}: {run.error}" if run.error else (json.dumps(run.result) if run.result else "")
        table.add_row(
            str(run.id),
            run.state,
            f"{run.attempt}/{run.max_tries}",
            _iso(run.enqueued_at),
            _iso(run.started_at),
            _iso(run.finished_at),
            str(run.duration_ms or "-"),
            run.worker_id or "-",
            detail,
        )
    console.print(table)
    for run in runs:
        if run.trace_id:  # tracing on (OTEL_EXPORTER_OTLP_ENDPOINT): the latest attempt's trace, to look up
            console.print(f"trace of run {run.id} (attempt {run.attempt}): {run.trace_id}", highlight=False)


@jobs_app.command("retry")
def retry_command(
    job_id: str = typer.Argument(..., help="The id of a dead job (see `jobs failed`)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-enqueue a dead job with the same name, arguments, queue and id."""
    job_id = _checked_id(job_id, "JOB_ID")

    async def _run() -> EnqueueResult:
        async with _stores() as (conn, client):
            try:
                return await retry_dead(client, conn, JOBS, job_id)
            except (NotRetryableError, UnknownJobError, JobArgumentsError) as exc:
                raise CommandError(str(exc)) from None

    result = run_async(_run())
    _report_enqueue(result, as_json)


async def _queue_stats(conn: asyncpg.Connection, client: aioredis.Redis) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    running = await ledger.running_per_queue(conn)
    stats = []
    for queue in QUEUES:
        key = queue_key(queue)
        depth = await client.zcard(key)
        ready = await client.zcount(key, "-inf", now_ms)
        oldest = await client.zrange(key, 0, 0, withscores=True)
        workers = [k async for k in client.scan_iter(match=health_key_pattern(queue), count=500)]
        lines = [await client.get(k) for k in workers]
        degraded = sum(1 for line in lines if line is not None and line.startswith(b"degraded"))
        oldest_age = (now_ms - oldest[0][1]) / 1000 if oldest and ready else 0.0
        stats.append(
            {
                "queue": queue,
                "depth": depth,
                "ready": ready,
                "scheduled": depth - ready,
                "running": running.get(queue, 0),
                "oldest_ready_age_s": round(max(oldest_age, 0.0), 3),
                "live_workers": len(workers) - degraded,
                "degraded_workers": degraded,
            }
        )
    return stats


@jobs_app.command("queues")
def queues_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """Depth of each queue (ready now / scheduled later), running jobs, the oldest ready job's age, live workers
    (a worker waiting for Redis or Postgres to come back is counted as degraded, not live)."""

    async def _run() -> list[dict[str, Any]]:
        async with _stores() as (conn, client):
            return await _queue_stats(conn, client)

    stats = run_async(_run())
    if as_json:
        _print_json(stats)
        return
    table = Table("queue", "depth", "ready", "scheduled", "running", "oldest ready", "live workers", "degraded")
    for s in stats:
        table.add_row(
            s["queue"],
            str(s["depth"]),
            str(s["ready"]),
            str(s["scheduled"]),
            str(s["running"]),
            f"{s['oldest_ready_age_s']:.1f} s",
            str(s["live_workers"]),
            str(s["degraded_workers"]),
        )
    console.print(table)
