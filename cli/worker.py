"""`worker` and `health`: running the job runtime and asking whether it runs."""

from __future__ import annotations

import asyncio
import time

import typer
from rich.table import Table

from cli.common import backends, console, fail, run_async, settings
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime.keys import QUEUES, health_key_pattern
from jobs.runtime.outage import StoreOutage
from jobs.runtime.processes import run_worker_processes
from jobs.runtime.worker import DEFAULT_BURST_HORIZON_S, WorkerConfigError, WorkerOptions, run_workers
from store.postgres import BackendUnavailable
from store.redis import connect_redis

EXIT_UNHEALTHY = 1
EXIT_STORE_OUTAGE = 1
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
        if count == 1:
            run_async(run_workers(cfg, found.database_url, found.redis_url, options, JOBS))
            return
        code = run_worker_processes(cfg, found.database_url, found.redis_url, options, JOBS, count)
    except (WorkerConfigError, ScheduleError) as exc:
        fail(str(exc))
    except StoreOutage as exc:
        fail(str(exc), code=EXIT_STORE_OUTAGE)
    if code:
        raise typer.Exit(code)


async def _live_workers(redis_url: str, queues: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    client = await connect_redis(redis_url)
    try:
        live: dict[str, list[tuple[str, str]]] = {}
        for queue in queues:
            entries = []
            async for key in client.scan_iter(match=health_key_pattern(queue), count=500):
                value = await client.get(key)
                worker_id = key.decode().rsplit(":health-check:", 1)[-1]
                entries.append((worker_id, value.decode() if value else ""))
            live[queue] = sorted(entries)
        return live
    finally:
        await client.aclose()


def _check_store_lag(database_url: str) -> None:
    """health --stores: one line per derived store; exit 1 when one lags past the alert or Postgres is away."""
    from cli.stores import read_lags

    try:
        lags = asyncio.run(read_lags(database_url, settings().sync_lag_alert_s))
    except BackendUnavailable as exc:
        fail(str(exc), code=EXIT_UNHEALTHY)
    for lag in lags:
        console.print(lag.line(), highlight=False, soft_wrap=True)
    lagging = [lag.store for lag in lags if lag.lagging]
    if lagging:
        fail(f"derived store(s) lagging: {', '.join(lagging)} (see `run.py sync status`)", code=EXIT_UNHEALTHY)


def _serving(health_line: str) -> bool:
    """A worker claims jobs unless its health line says it is degraded (jobs/runtime/outage.py) or still warming
    (opening what its jobs need, like the local embedding model, before it takes work)."""
    return not health_line.startswith(("degraded", "warming"))


def health_command(
    queue: list[str] | None = typer.Option(None, "--queue", "-q", help="Require only this queue (repeatable)."),
    stores: bool = typer.Option(
        False, "--stores", help="Also fail when a derived store lags past ORRERY_SYNC_LAG_ALERT_S (reads Postgres)."
    ),
) -> None:
    """Exit 0 when every queue (or each --queue) has at least one live worker, else 1.

    A worker whose health line starts with `degraded` (Redis or Postgres away: it claims nothing) or `warming` (it
    loads the local embedding model before taking work) is listed but not counted as live. With --stores, the graph
    and vector stores' outbox backlog is read too (no store client is opened): a store whose oldest pending change
    is older than the alert makes it exit 1."""
    queues = _check_queues(queue)
    found = backends()
    started = time.perf_counter()
    try:
        live = asyncio.run(_live_workers(found.redis_url, queues))
    except BackendUnavailable as exc:
        fail(str(exc), code=EXIT_UNHEALTHY)
    table = Table("queue", "live workers", "last report")
    for name in queues:
        workers = live[name]
        detail = "; ".join(f"{wid}: {info}" for wid, info in workers) or "-"
        table.add_row(name, str(sum(_serving(info) for _, info in workers)), detail)
    console.print(table)
    if stores:
        _check_store_lag(found.database_url)
    missing = [name for name in queues if not any(_serving(info) for _, info in live[name])]
    elapsed = (time.perf_counter() - started) * 1000
    if missing:
        degraded = sum(not _serving(info) for name in missing for _, info in live[name])
        note = f"; {degraded} degraded or warming up (see the table)" if degraded else ""
        fail(
            f"no live worker for queue(s): {', '.join(missing)}{note} (checked in {elapsed:.0f} ms)",
            code=EXIT_UNHEALTHY,
        )
    console.print(f"healthy: every queue has a live worker ({elapsed:.0f} ms)")
