"""Several worker processes under one `run.py worker --processes N`, restarted when one dies.

Why several: a worker is one Python process, and Python runs one job's CPU at a time; an ingestion spends most of
its time in CPU (the openai client, validation, the driver), so one process saturates one core however high its
concurrency. N processes use N cores. Each child is an ordinary worker (its own pools, lease heartbeat, worker id,
health key); they share the queues through Redis exactly as workers on different machines do.

Why restart: a child killed by the OOM killer, a stray SIGKILL or a store outage longer than its tolerance leaves
the others running, and its jobs are taken over by them when its leases lapse; stopping every process because one
died (the earlier policy) turned one lost process into a whole worker down until an outside supervisor acted. So the
parent starts a replacement after a backoff (settings.worker_restart_delay_s, doubling up to RESTART_MAX_DELAY_S,
back to the first delay once a child has run STABLE_AFTER_S). A child that dies on every start (bad configuration,
a database that does not exist) is not restarted forever: after QUICK_FAILURE_LIMIT deaths in a row, each within
STABLE_AFTER_S of its start, the parent stops the others and exits non-zero with one line.

SIGTERM/SIGINT to the parent are forwarded; each child drains as a single worker would, and the parent exits 0.
In burst mode a child that exits 0 has finished; only a failed one is restarted.

With ORRERY_METRICS_PORT the parent serves the metrics of all its children (prometheus_client's multiprocess mode,
jobs/runtime/metrics.py): the children write to a fresh directory and serve nothing themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog

from jobs.runtime import loop as event_loop
from jobs.runtime import metrics
from jobs.runtime.logs import configure_logging, share_write_lock
from jobs.runtime.registry import JobTable
from jobs.runtime.scheduler import schedules
from jobs.runtime.worker import WorkerConfigError, WorkerOptions, check_ready, run_workers
from settings import Settings

logger = structlog.get_logger("orrery.worker")

EXIT_CHILD_FAILED = 1

RESTART_MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0
"""A child that ran this long before dying was not failing on start: its restart delay starts over."""
QUICK_FAILURE_LIMIT = 5
"""Deaths in a row, each within STABLE_AFTER_S of the start, after which the parent gives up."""


def _child(
    settings: Settings, database_url: str, redis_url: str, options: WorkerOptions, jobs: JobTable, log_lock: str
) -> None:
    """One worker process (spawned: a fresh interpreter, so logging is set up again, writing its lines under the
    parent's lock file; the job table arrives pickled, its handlers by reference to their modules)."""
    share_write_lock(log_lock)
    configure_logging(settings.log_level, settings.log_format)
    try:
        event_loop.run(run_workers(settings, database_url, redis_url, options, jobs), settings.event_loop)
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the children too; the drain already happened
        pass
    except Exception as exc:
        logger.error("worker process failed", error_class=type(exc).__name__, error=str(exc))
        sys.exit(EXIT_CHILD_FAILED)


@dataclass
class _Slot:
    """One of the N processes: the current child, when it started, and its record of quick deaths."""

    name: str
    process: BaseProcess
    started: float
    quick_failures: int = 0
    restart_at: float | None = None
    finished: bool = False


def restart_delay(first_s: float, quick_failures: int) -> float:
    """first, 2 * first, 4 * first … capped at RESTART_MAX_DELAY_S; the first delay after a stable run."""
    return float(min(RESTART_MAX_DELAY_S, first_s * 2 ** max(quick_failures - 1, 0)))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _shell_code(code: int | None) -> int:
    """Killed by signal N: 128 + N, as a shell reports it; a clean exit code otherwise (never 0 here)."""
    if code is None or code == 0:
        return EXIT_CHILD_FAILED
    return 128 - code if code < 0 else code


def run_worker_processes(
    settings: Settings, database_url: str, redis_url: str, options: WorkerOptions, jobs: JobTable, processes: int
) -> int:
    """Run `processes` workers, restarting any that dies, until SIGTERM/SIGINT (or burst's end); returns the exit
    code: 0, or non-zero when a child kept dying on start and the parent gave up."""
    if processes < 1:
        raise WorkerConfigError(f"--processes must be at least 1, got {processes}")
    asyncio.run(check_ready(settings, database_url, options, jobs))  # fail here, once, rather than in every child
    schedules(jobs, settings.cron, queues=options.queues)  # a bad ORRERY_CRON too: children would die on it
    with contextlib.ExitStack() as serving:
        metrics_dir = None
        if settings.metrics_port:
            metrics_dir = serving.enter_context(metrics.multiprocess_dir())  # before any child starts
            try:
                served = metrics.serve(
                    settings.metrics_port, database_url, redis_url, options.queues, multiprocess=metrics_dir
                )
            except metrics.MetricsPortError as exc:
                raise WorkerConfigError(str(exc)) from None
            serving.callback(served.close)
        return _supervise(settings, database_url, redis_url, options, jobs, processes, metrics_dir)


def _supervise(
    settings: Settings,
    database_url: str,
    redis_url: str,
    options: WorkerOptions,
    jobs: JobTable,
    processes: int,
    metrics_dir: str | None,
) -> int:
    context = multiprocessing.get_context("spawn")
    child_options = replace(options, serve_metrics=False)
    handle, log_lock = tempfile.mkstemp(prefix="orrery-log-", suffix=".lock")
    os.close(handle)
    share_write_lock(log_lock)

    def spawn(name: str) -> BaseProcess:
        process = context.Process(
            target=_child, args=(settings, database_url, redis_url, child_options, jobs, log_lock), name=name
        )
        process.start()
        return process

    slots: list[_Slot] = []
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(slots, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    gave_up: int | None = None
    try:
        for index in range(1, processes + 1):
            slots.append(_Slot(f"orrery-worker-{index}", spawn(f"orrery-worker-{index}"), time.monotonic()))
        logger.info("worker processes started", processes=processes, pids=[slot.process.pid for slot in slots])
        while True:
            alive = [slot for slot in slots if slot.process.is_alive()]
            if stopping and not alive:
                break
            if not stopping:
                for slot in slots:
                    if slot.finished or slot.restart_at is not None or slot.process.is_alive():
                        continue
                    if metrics_dir is not None:
                        metrics.process_dead(slot.process.pid, metrics_dir)
                    if options.burst and slot.process.exitcode == 0:
                        slot.finished = True
                        continue
                    gave_up = _schedule_restart(slot, settings.worker_restart_delay_s)
                    if gave_up is not None:
                        stopping = True
                        _signal_all(slots, signal.SIGTERM)
                        break
            if not stopping:
                now = time.monotonic()
                for slot in slots:
                    if slot.restart_at is not None and slot.restart_at <= now:
                        slot.process, slot.started, slot.restart_at = spawn(slot.name), now, None
                        logger.info("worker process restarted", name=slot.name, pid=slot.process.pid)
            if options.burst and all(slot.finished for slot in slots):
                break
            if alive:
                wait([slot.process.sentinel for slot in alive], timeout=_next_wake(slots))
            else:
                time.sleep(_next_wake(slots))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("worker processes stopped", exit_codes=[slot.process.exitcode for slot in slots])
    with contextlib.suppress(OSError):
        os.unlink(log_lock)
    if gave_up is not None:
        return gave_up
    drained = [slot.process.exitcode for slot in slots if slot.restart_at is None]
    failed = [code for code in drained if code not in (0, None, -signal.SIGTERM, -signal.SIGINT)]
    return _shell_code(failed[0]) if failed else 0


def _schedule_restart(slot: _Slot, first_delay_s: float) -> int | None:
    """Plan the restart of a dead child; the exit code to give up with when it keeps dying on start."""
    code = slot.process.exitcode
    ran_s = time.monotonic() - slot.started
    slot.quick_failures = slot.quick_failures + 1 if ran_s < STABLE_AFTER_S else 0
    if slot.quick_failures >= QUICK_FAILURE_LIMIT:
        logger.error(
            f"worker process {slot.name} died {slot.quick_failures} times in a row within {STABLE_AFTER_S:g} s of "
            f"starting (last: {_describe_exit(code)}); not restarting it again, stopping the others: see its "
            "'worker process failed' line above and fix the cause",
            name=slot.name,
            exit_code=code,
        )
        return _shell_code(code)
    delay = restart_delay(first_delay_s, slot.quick_failures)
    slot.restart_at = time.monotonic() + delay
    logger.warning(
        "worker process died; restarting it",
        name=slot.name,
        exit=_describe_exit(code),
        ran_s=round(ran_s, 1),
        restart_in_s=delay,
    )
    return None


def _next_wake(slots: list[_Slot]) -> float:
    """Sleep until a child exits, the next planned restart, or a second (to notice a forwarded signal)."""
    now = time.monotonic()
    planned = [slot.restart_at - now for slot in slots if slot.restart_at is not None]
    return max(0.0, min([1.0, *planned]))


def _signal_all(slots: list[_Slot], signum: int) -> None:
    for slot in slots:
        if slot.process.is_alive() and slot.process.pid is not None:
            os.kill(slot.process.pid, signum)
