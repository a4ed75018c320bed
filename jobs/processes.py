"""Several worker processes under one `run.py worker --processes N`.

Why: a worker is one Python process, and Python runs one job's CPU at a time; an ingestion spends most of its time
in CPU (the openai client, validation, the driver), so one process saturates one core however high its
concurrency. N processes use N cores. Each child is an ordinary worker (its own pools, lease heartbeat, worker id,
health key); they share the queues through Redis exactly as workers on different machines do.

The parent only supervises: it forwards SIGTERM/SIGINT (each child drains as a single worker would) and, when a
child dies on its own outside burst mode, stops the others and exits with the child's code, so that whatever
supervises the parent (systemd, Kubernetes) restarts the whole worker instead of it quietly running with fewer
processes than configured.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog

from jobs.logs import configure_logging
from jobs.worker import WorkerConfigError, WorkerOptions, check_served, run_workers
from settings import Settings

logger = structlog.get_logger("orrery.worker")

EXIT_CHILD_FAILED = 1


def _child(settings: Settings, database_url: str, redis_url: str, options: WorkerOptions) -> None:
    """One worker process (spawned: a fresh interpreter, so logging and the job catalog are set up again)."""
    from jobs import catalog  # noqa: F401  (registers every job)

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_workers(settings, database_url, redis_url, options))
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the children too; the drain already happened
        pass
    except Exception as exc:
        logger.error("worker process failed", error_class=type(exc).__name__, error=str(exc))
        sys.exit(EXIT_CHILD_FAILED)


def _signal_all(children: Sequence[BaseProcess], signum: int) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signum)


def run_worker_processes(
    settings: Settings, database_url: str, redis_url: str, options: WorkerOptions, processes: int
) -> int:
    """Run `processes` workers until they exit; returns the exit code (0, or the first failed child's)."""
    if processes < 1:
        raise WorkerConfigError(f"--processes must be at least 1, got {processes}")
    check_served(options)  # fail here, once, rather than in every child
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(settings, database_url, redis_url, options), name=f"orrery-worker-{index}")
        for index in range(1, processes + 1)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        logger.info("worker processes started", processes=processes, pids=[child.pid for child in children])
        while running := [child for child in children if child.is_alive()]:
            wait([child.sentinel for child in running], timeout=1.0)
            died = [c for c in children if not c.is_alive() and c.exitcode not in (0, None)]
            if died and not stopping:
                stopping = True
                logger.error("worker process died; stopping the others", name=died[0].name, exit_code=died[0].exitcode)
                _signal_all(children, signal.SIGTERM)
            elif not options.burst and not stopping and len(running) < len(children):
                stopping = True  # a child left without a signal: the set is incomplete, stop the rest
                _signal_all(children, signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [child.exitcode for child in children]
    logger.info("worker processes stopped", exit_codes=codes)
    failed = [code for code in codes if code not in (0, None, -signal.SIGTERM, -signal.SIGINT)]
    if not failed:
        return 0
    return 128 - failed[0] if failed[0] < 0 else failed[0]  # killed by signal N: 128 + N, as a shell reports it
