"""`trigger`: enqueue a job by hand, its arguments validated and the users and conversations they name looked up
before anything is written; with --wait, follow the run in the ledger."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import typer

from cli.common import EXIT_NOT_RIGHT, CommandError, console, fail, print_json, run_async, warn
from cli.job_args import ArgumentParseError, collect_args, parse_at, parse_duration, parse_job_id, parse_wait_timeout
from cli.runs import connections, iso, run_json
from jobs.catalog import JOBS
from jobs.runtime import queue as redis_queue
from jobs.runtime.enqueue import EnqueueResult, JobArgumentsError, enqueue, resolve_run_at, validate_args
from jobs.runtime.keys import QUEUES
from jobs.runtime.registry import JobSpec, UnknownJobError
from store import ledger, references
from store.ledger import FINAL_STATES, JobRun

EXIT_WAIT_TIMEOUT = 3


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
    """Enqueue a job by hand and print its id. Its arguments are validated, and a user or conversation they name
    must exist in Postgres, before anything is written (exit 2 otherwise).

    With --wait, follow the run until it ends (exit 1 if it ends dead, 3 if --timeout passes first); when no live
    worker serves the job's queue, it says so at once.

    Examples:

    \b
      run.py trigger ingest --arg conversation_id=c_1 --wait
      run.py trigger ingest -a conversation_id=c_1 -a reprocess=1
      run.py trigger insight --args-json '{"user_id": "u_1"}'
      run.py trigger cycle_report -a user_id=u_1 --dry-run
      run.py trigger sweep_timeouts --in 10m
      run.py trigger diag.echo --wait   # a worker end to end
    """
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
            "run_at": iso(when),
            "args": model.model_dump(mode="json"),
            "dry_run": True,
        }
        if as_json:
            print_json(plan)
        else:
            console.print(f"would enqueue {plan['name']} as {plan['job_id']} on {plan['queue']} at {plan['run_at']}")
            console.print(f"args {json.dumps(plan['args'])}", highlight=False, soft_wrap=True)
        return
    values = model.model_dump(mode="json")
    code = run_async(_trigger(spec, values, job_id, queue, when, wait, timeout, as_json))
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
    async with connections() as (conn, client):
        missing = await references.missing(conn, args)
        if missing:
            raise CommandError(f"job {spec.name!r}: " + "; ".join(missing) + " (nothing was enqueued)")
        try:
            result = await enqueue(client, conn, spec, args, job_id=job_id, queue=queue, run_at=when)
        except JobArgumentsError as exc:
            raise CommandError(str(exc)) from None
        if not wait:
            report_enqueue(result, as_json)
            return 0
        if not as_json:
            report_enqueue(result, as_json)
        serving = await redis_queue.workers(client, [result.queue])
        if not any(report.serving for report in serving[result.queue]):
            warn(
                f"no live worker serves the {result.queue} queue: the job waits until one starts "
                f"(`run.py worker --queue {result.queue}`; `run.py health` lists them)"
            )
        run = await _follow(conn, result, timeout, as_json)
    if run is None or run.state not in FINAL_STATES:
        state = run.state if run else "unknown"
        if as_json:
            print_json({**_result_json(result), "state": state, "timed_out": True})
        else:
            console.print(f"[yellow]job {result.job_id} still {state} after {timeout:g} s[/]", highlight=False)
        return EXIT_WAIT_TIMEOUT
    if as_json:
        print_json({**_result_json(result), "run": run_json(run)})
    return 0 if run.state == "succeeded" else EXIT_NOT_RIGHT


def _result_json(result: EnqueueResult) -> dict[str, Any]:
    return {**asdict(result), "run_at": iso(result.run_at)}


def report_enqueue(result: EnqueueResult, as_json: bool) -> None:
    if as_json:
        print_json(_result_json(result))
    elif result.enqueued:
        console.print(result.job_id, highlight=False, soft_wrap=True)
        console.print(f"enqueued {result.name} on {result.queue} for {iso(result.run_at)}", highlight=False)
    else:
        console.print(result.job_id, highlight=False, soft_wrap=True)
        console.print(f"not enqueued: {result.job_id} is already queued or running", highlight=False, soft_wrap=True)


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
                console.print(describe_state(run), highlight=False, soft_wrap=True)
            seen = now
            if run.state in FINAL_STATES:
                return run
        await asyncio.sleep(0.1)
    return run


def describe_state(run: JobRun) -> str:
    text = f"{run.state:<9} attempt {run.attempt}/{run.max_tries}"
    if run.state == "succeeded":
        text += f" in {run.duration_ms} ms" + (f" {json.dumps(run.result)}" if run.result else "")
    elif run.error:
        text += f" {run.error_class}: {run.error}"
        if run.state in ("failed", "queued"):
            text += f" (next try {iso(run.run_at)})"
    return text
