"""`worker` and `health`: running the job runtime and asking whether it runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict

import typer

from cli.common import EXIT_NOT_RIGHT, backends, console, fail, migrated, print_json, run_async, settings
from cli.sync import read_lags
from cli.tables import Col, show
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime import loop as event_loop
from jobs.runtime import queue as redis_queue
from jobs.runtime.keys import QUEUES
from jobs.runtime.outage import StoreOutage
from jobs.runtime.processes import run_worker_processes
from jobs.runtime.queue import WorkerReport
from jobs.runtime.worker import DEFAULT_BURST_HORIZON_S, WorkerConfigError, WorkerOptions, run_workers
from store.postgres import BackendUnavailable
from store.redis import connect_redis

EXIT_STORE_OUTAGE = EXIT_NOT_RIGHT
"""A store stayed away past ORRERY_OUTAGE_TOLERANCE_S: nothing to change in the command, something to bring back."""


def _check_queues(queues: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(queues or QUEUES))
    unknown = [q for q in chosen if q not in QUEUES]
    if unknown:
        fail(f"unknown queue {unknown[0]!r}; queues: {', '.join(QUEUES)}")
    return chosen


def worker_command(
    queue: list[str] | None = typer.Option(None, "--queue", "-q", help="Serve only this queue (repeatable)."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, help="Jobs run at once per queue (default ORRERY_WORKER_CONCURRENCY)."
    ),
    burst: bool = typer.Option(
        False,
        "--burst",
        help="Run until no job is due within --horizon, then exit and say what stays queued (no cron).",
    ),
    horizon: float = typer.Option(
        DEFAULT_BURST_HORIZON_S,
        "--horizon",
        min=0,
        max=86400,
        help="With --burst: wait for jobs (retries included) due within this many seconds; later ones stay queued.",
    ),
    processes: int | None = typer.Option(
        None,
        "--processes",
        "-p",
        min=1,
        max=64,
        help="Worker processes, each with --concurrency jobs; one per CPU core uses them all "
        "(default ORRERY_WORKER_PROCESSES, 1).",
    ),
) -> None:
    """Run jobs from the interactive and batch queues (or --queue), fire cron schedules, drain on SIGTERM.

    A process runs one job's Python code at a time: with several cores, run one process per core (--processes).
    The parent forwards SIGTERM to every process and restarts one that dies (giving up, non-zero, if it keeps dying
    on start). A worker waits up to ORRERY_OUTAGE_TOLERANCE_S for Redis or Postgres to come back, then exits 1.

    It refuses to start (one line, exit 2) on a database that is not migrated or was migrated by an older or newer
    Orrery, and when the jobs it serves need an LLM and none is configured (OPENAI_API_KEY / OPENAI_BASE_URL, or
    ORRERY_LLM=scripted for the demo's sample answers).

    Examples:

    \b
      run.py worker
      run.py worker --processes 4
      run.py worker --queue interactive --concurrency 20
      ORRERY_LLM=scripted run.py worker --burst
    """
    cfg = settings()
    found = backends()
    options = WorkerOptions(
        queues=_check_queues(queue),
        concurrency=concurrency or cfg.worker_concurrency,
        burst=burst,
        burst_horizon_s=horizon,
    )
    count = processes or cfg.worker_processes
    try:
        loop = event_loop.loop_name(cfg.event_loop)
    except RuntimeError as exc:
        fail(str(exc))
    try:
        if count == 1:
            run_async(run_workers(cfg, found.database_url, found.redis_url, options, JOBS), loop=loop)
            return
        code = run_worker_processes(cfg, found.database_url, found.redis_url, options, JOBS, count)
    except (WorkerConfigError, ScheduleError, BackendUnavailable) as exc:
        fail(str(exc))
    except StoreOutage as exc:
        fail(str(exc), code=EXIT_STORE_OUTAGE)
    if code:
        raise typer.Exit(code)


async def _live_workers(redis_url: str, queues: tuple[str, ...]) -> dict[str, list[WorkerReport]]:
    client = await connect_redis(redis_url)
    try:
        return await redis_queue.workers(client, queues)
    finally:
        await client.aclose()


def health_command(
    queue: list[str] | None = typer.Option(None, "--queue", "-q", help="Require only this queue (repeatable)."),
    stores: bool = typer.Option(
        False, "--stores", help="Also fail when a derived store lags past ORRERY_SYNC_LAG_ALERT_S (reads Postgres)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Exit 0 when every queue (or each --queue) has at least one live worker, else 1.

    A worker whose health line starts with `degraded` (Redis or Postgres away: it claims nothing) or `warming` (it
    loads the local embedding model before taking work) is listed but not counted as live. With --stores, the graph
    and vector stores' outbox backlog is read too (no store client is opened): a store whose oldest pending change is
    older than the alert makes it exit 1.

    Examples:

    \b
      run.py health
      run.py health --queue interactive --stores --json
    """
    queues = _check_queues(queue)
    found = migrated() if stores else backends()
    started = time.perf_counter()
    try:
        live = asyncio.run(_live_workers(found.redis_url, queues))
        lags = asyncio.run(read_lags(found.database_url, settings().sync_lag_alert_s)) if stores else []
    except BackendUnavailable as exc:
        fail(str(exc), code=EXIT_NOT_RIGHT)
    elapsed = (time.perf_counter() - started) * 1000
    missing = [name for name in queues if not any(report.serving for report in live[name])]
    lagging = [lag.store for lag in lags if lag.lagging]
    if as_json:
        print_json(
            {
                "healthy": not missing and not lagging,
                "queues": {
                    name: {
                        "live_workers": sum(report.serving for report in live[name]),
                        "workers": [{"worker_id": r.worker_id, "report": r.line} for r in live[name]],
                    }
                    for name in queues
                },
                "stores": [{**asdict(lag), "lagging": lag.lagging} for lag in lags] if stores else None,
                "checked_ms": round(elapsed),
            }
        )
        if missing or lagging:
            raise typer.Exit(EXIT_NOT_RIGHT)
        return
    rows = [
        (
            name,
            str(sum(r.serving for r in live[name])),
            "; ".join(f"{r.worker_id}: {r.line}" for r in live[name]) or "-",
        )
        for name in queues
    ]
    show(console, [Col("queue", key=True), Col("live workers"), Col("last report")], rows)
    for lag in lags:
        console.print(lag.line(), highlight=False, soft_wrap=True)
    if lagging:
        fail(f"derived store(s) lagging: {', '.join(lagging)} (see `run.py sync status`)", code=EXIT_NOT_RIGHT)
    if missing:
        degraded = sum(not r.serving for name in missing for r in live[name])
        note = f"; {degraded} degraded or warming up (see the table)" if degraded else ""
        fail(
            f"no live worker for queue(s): {', '.join(missing)}{note} (checked in {elapsed:.0f} ms)",
            code=EXIT_NOT_RIGHT,
        )
    console.print(f"healthy: every queue has a live worker ({elapsed:.0f} ms)")
