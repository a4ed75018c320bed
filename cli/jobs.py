"""`jobs …`: the job table, recent runs, one job in full, the queues, cancelling a queued job; the dead-letter
commands (`failed`, `retry`, `purge`) are in cli/dead_letters.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer

from cli import dead_letters
from cli.common import EXIT_NOT_RIGHT, CommandError, console, fail, hint, print_json, run_async, settings
from cli.job_args import ArgumentParseError, parse_duration
from cli.llm_calls import llm_call_json, show_llm_calls
from cli.runs import checked_id, checked_job_name, connections, iso, run_json
from cli.tables import Col, show
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime import queue as redis_queue
from jobs.runtime.enqueue import NotCancellableError, cancel_queued
from jobs.runtime.keys import QUEUES
from jobs.runtime.queue import QueuedJob
from jobs.runtime.scheduler import schedules
from store import ledger
from store.ledger import STATES, JobRun
from store.llm_calls import StoredLLMCall, list_job_llm_calls

jobs_app = typer.Typer(
    help="The job table, runs, queues and dead letters.", no_args_is_help=True, rich_markup_mode=None
)


# --- jobs list ---------------------------------------------------------------------------------------------------


@jobs_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every registered job with its queue, limits and schedule (next run, UTC).

    Examples:

    \b
      run.py jobs list
      run.py jobs list --json
    """
    now = datetime.now(UTC)
    try:
        scheduled = {job.spec.name: job.schedule for job in schedules(JOBS, settings().cron)}
    except ScheduleError as exc:
        fail(str(exc))
    rows: list[dict[str, Any]] = []
    for spec in JOBS.all():
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
                "next_run": iso(schedule.next_after(now)) if schedule else None,
                "description": spec.summary,
            }
        )
    if as_json:
        print_json(rows)
        return
    columns = [
        Col("job", key=True),
        Col("queue"),
        Col("timeout", justify="right"),
        Col("tries", justify="right"),
        Col("schedule"),
        Col("what it does"),
    ]
    table_rows = [
        (
            row["name"],
            row["queue"],
            f"{row['timeout_s']:g} s",
            str(row["max_tries"]),
            f"{row['schedule']} (next {row['next_run']})" if row["schedule"] else "-",
            row["description"],
        )
        for row in rows
    ]
    show(console, columns, table_rows)
    hint("dedupe keys and backoffs: `run.py jobs list --json`")


# --- jobs runs ---------------------------------------------------------------------------------------------------


def print_runs(runs: list[JobRun]) -> None:
    """One line per run, the job id last and whole (a cycle step's id alone is 66 characters, too wide for any
    table at 80 columns), an error on its own line below; results are in `jobs show`."""
    for run in runs:
        tries = f"{run.attempt}/{run.max_tries}"
        console.print(
            f"{run.state:<9} {tries:>5}  {iso(run.enqueued_at)}  {run.job_id}", highlight=False, soft_wrap=True
        )
        if run.error:
            console.print(f"{'':17}{run.error_class}: {run.error}", highlight=False, soft_wrap=True)


@jobs_app.command("runs")
def runs_command(
    job: str | None = typer.Option(None, "--job", help="Only runs of this job name."),
    state: str | None = typer.Option(None, "--state", help=f"Only runs in this state: {', '.join(STATES)}."),
    since: str | None = typer.Option(None, "--since", help="Only runs enqueued this long ago or later: 30m, 2h, 1d."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="At most this many runs."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, arguments included."),
) -> None:
    """Recent runs, newest first: job id, job, state, attempt, when enqueued, the error or the result.

    Finds a cycle's job ids without knowing its cycle key (`--job cycle_report --since 1d`); `jobs show JOB_ID`
    has one job in full, arguments included.

    Examples:

    \b
      run.py jobs runs --since 1h
      run.py jobs runs --job cycle_report --state dead
      run.py jobs runs --job ingest -n 10 --json
    """
    job = checked_id(job, "--job") if job is not None else None
    if state is not None and state not in STATES:
        fail(f"--state {state!r}: expected one of {', '.join(STATES)}")
    try:
        after = datetime.now(UTC) - parse_duration(since) if since is not None else None
    except ArgumentParseError as exc:
        fail(str(exc).replace("--in", "--since"))

    async def _run() -> list[JobRun]:
        async with connections() as (conn, _):
            name = await checked_job_name(conn, job)
            return await ledger.recent_runs(conn, limit=limit, job_name=name, state=state, since=after)

    runs = run_async(_run())
    if as_json:
        print_json([run_json(run) for run in runs])
    elif not runs:
        console.print("no runs match")
    else:
        console.print(f"{'state':<9} {'try':>5}  {'enqueued':<20}  job id", style="bold", highlight=False)
        print_runs(runs)
        hint("a run in full: `run.py jobs show JOB_ID`")


# --- jobs show ---------------------------------------------------------------------------------------------------


def _redis_json(view: QueuedJob | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "state": view.state,
        "name": view.name,
        "queue": view.queue,
        "args": view.args,
        "enqueued_at": iso(view.enqueued_at),
        "run_at": iso(view.run_at),
        "problem": view.problem,
    }


def _describe_redis(view: QueuedJob | None) -> str:
    if view is None:
        return "no"
    if view.state == "orphaned":
        return "a record with no queue entry: no worker will run it (it expires on its own; re-enqueue it)"
    where = f"{view.state} on {view.queue}, enqueued {iso(view.enqueued_at)}, runs at {iso(view.run_at)}"
    return where + (f"; a worker will refuse it: {view.problem}" if view.problem else "")


@jobs_app.command("show")
def show_command(
    job_id: str = typer.Argument(..., help="The job id (e.g. ingest:CONVERSATION_ID)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One job in full: its arguments, where it is in Redis now (also a job another program enqueued that no worker
    has started yet), every run of its id, newest first, with errors and results, and the LLM calls its runs made:
    prompt tokens (of which the provider served from its prompt cache), completion tokens and the estimated cost at
    list price, cached tokens at the cached rate.

    Examples:

    \b
      run.py jobs show ingest:c_123
      run.py jobs show ingest:c_123 --json
    """
    job_id = checked_id(job_id, "JOB_ID")

    async def _run() -> tuple[list[JobRun], QueuedJob | None, list[StoredLLMCall]]:
        async with connections() as (conn, client):
            runs = await ledger.runs_of(conn, job_id)
            return runs, await redis_queue.peek(client, job_id), await list_job_llm_calls(conn, job_id)

    runs, view, calls = run_async(_run())
    if runs:
        name, queue, args = runs[0].job_name, runs[0].queue, runs[0].args
    elif view is not None:
        name, queue, args = view.name or "?", view.queue or "?", view.args
    else:
        fail(f"no job with id {job_id!r} in the ledger or in Redis (see `run.py jobs runs` or `run.py jobs queues`)")
    if as_json:
        runs_json = [run_json(r) for r in runs]
        print_json(
            {
                "job_id": job_id,
                "in_redis": view is not None,
                "redis": _redis_json(view),
                "runs": runs_json,
                "llm_calls": [llm_call_json(call) for call in calls],
            }
        )
        return
    console.print(f"[bold]{job_id}[/]", highlight=False, soft_wrap=True)
    console.print(f"job {name} on {queue}", highlight=False)
    console.print(f"arguments {json.dumps(args)}", highlight=False, soft_wrap=True)
    console.print(f"in Redis: {_describe_redis(view)}", highlight=False, soft_wrap=True)
    if not runs:
        console.print("no run in the ledger yet: no worker has started it (it was enqueued straight into Redis)")
        return
    columns = [
        Col("run", key=True, justify="right"),
        Col("state"),
        Col("try", justify="right"),
        Col("started"),
        Col("ms", justify="right"),
        Col("worker", key=True),
    ]
    rows = [
        (
            str(run.id),
            run.state,
            f"{run.attempt}/{run.max_tries}",
            iso(run.started_at or run.enqueued_at),
            str(run.duration_ms if run.duration_ms is not None else "-"),
            run.worker_id or "-",
        )
        for run in runs
    ]
    show(console, columns, rows)
    for run in runs:  # below the table, whole: an error or a result is read and copied, not folded into a column
        if run.error:
            console.print(f"run {run.id}: {run.error_class}: {run.error}", highlight=False, soft_wrap=True)
        elif run.result:
            console.print(f"run {run.id} result: {json.dumps(run.result)}", highlight=False, soft_wrap=True)
        if run.trace_id:  # tracing on (OTEL_EXPORTER_OTLP_ENDPOINT): the latest attempt's trace, to look up
            console.print(f"trace of run {run.id} (attempt {run.attempt}): {run.trace_id}", highlight=False)
    show_llm_calls(console, calls)


# --- jobs queues -------------------------------------------------------------------------------------------------


@jobs_app.command("queues")
def queues_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Depth of each queue (ready now / scheduled later), running jobs, the oldest ready job's age, live workers
    (a worker waiting for Redis or Postgres to come back is counted as degraded, not live).

    Examples:

    \b
      run.py jobs queues
      run.py jobs queues --json
    """

    async def _run() -> list[dict[str, Any]]:
        async with connections() as (conn, client):
            running = await ledger.running_per_queue(conn)
            depths = await redis_queue.depths(client, QUEUES)
            workers = await redis_queue.workers(client, QUEUES)
        return [
            {
                "queue": d.queue,
                "depth": d.depth,
                "ready": d.ready,
                "scheduled": d.depth - d.ready,
                "running": running.get(d.queue, 0),
                "oldest_ready_age_s": d.oldest_ready_age_s,
                "live_workers": sum(report.serving for report in workers[d.queue]),
                "degraded_workers": sum(not report.serving for report in workers[d.queue]),
            }
            for d in depths
        ]

    stats = run_async(_run())
    if as_json:
        print_json(stats)
        return
    columns = [Col("queue", key=True), *(Col(h, justify="right") for h in ("depth", "ready", "later", "running"))]
    columns += [Col("oldest ready", justify="right"), Col("workers", justify="right"), Col("degraded", justify="right")]
    rows = [
        (
            s["queue"],
            str(s["depth"]),
            str(s["ready"]),
            str(s["scheduled"]),
            str(s["running"]),
            f"{s['oldest_ready_age_s']:.1f} s",
            str(s["live_workers"]),
            str(s["degraded_workers"]),
        )
        for s in stats
    ]
    show(console, columns, rows)


# --- jobs cancel -------------------------------------------------------------------------------------------------


@jobs_app.command("cancel")
def cancel_command(
    job_id: str = typer.Argument(..., help="The id of a queued job (or one waiting for its next try)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Take a queued job off its queue; its run ends `cancelled` in the ledger. A job a worker is running now is
    not touched (exit 1: let it finish, or stop that worker); a finished or unknown one is exit 2.

    Examples:

    \b
      run.py jobs cancel sweep_timeouts@20261124T080000Z
      run.py jobs cancel ingest:c_123 --json
    """
    job_id = checked_id(job_id, "JOB_ID")

    async def _run() -> tuple[str, str]:
        async with connections() as (conn, client):
            try:
                if not await cancel_queued(client, conn, job_id):
                    return "running", "a worker is running it now: not cancelled; let it finish or stop that worker"
            except NotCancellableError as exc:
                raise CommandError(f"{exc} (see `run.py jobs show {job_id}`)") from None
            return "cancelled", f"{job_id} cancelled: taken off its queue; its run is `cancelled` in the ledger"

    outcome, message = run_async(_run())
    if as_json:
        print_json({"job_id": job_id, "outcome": outcome, "message": message})
    else:
        console.print(message, highlight=False, soft_wrap=True)
    if outcome != "cancelled":
        raise typer.Exit(EXIT_NOT_RIGHT)


jobs_app.command("failed")(dead_letters.failed_command)
jobs_app.command("retry")(dead_letters.retry_command)
jobs_app.command("purge")(dead_letters.purge_command)
