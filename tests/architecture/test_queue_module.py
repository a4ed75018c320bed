"""The queue has one module (issue 18): every Lua script, and every Redis key of the job runtime read or written
outside the worker's own loop, goes through jobs/runtime/queue.py. A command, a job or a generator that builds a
runtime key itself (or carries its own script) fails here, so the next one cannot drift from the layout."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "cli", "clients", "core", "jobs", "store", "bench")
RUNTIME_INSIDE = {
    "jobs/runtime/keys.py",  # names them
    "jobs/runtime/queue.py",  # the one module
    "jobs/runtime/worker.py",  # the worker's own loop: leases, health key
    "jobs/runtime/attempt.py",  # per attempt: retries
    "jobs/runtime/outcomes.py",  # an attempt's outcome, kept in Redis while Postgres is away
    "jobs/runtime/dead.py",  # dead letters of records arq cannot run
    "jobs/runtime/arq_seam.py",  # arq's key formats
    "jobs/runtime/scheduler.py",  # cron claims
}
ALLOWED_NAMES = {"QUEUES", "INTERACTIVE", "BATCH"}
"""What anyone may import from jobs/runtime/keys.py: queue names, not keys."""


def sources() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_lua_script_outside_the_queue_module() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources()
        if "redis.call(" in path.read_text() and path.relative_to(ROOT).as_posix() != "jobs/runtime/queue.py"
    ]
    assert offenders == [], f"move these Lua scripts into jobs/runtime/queue.py: {offenders}"


def test_runtime_keys_are_built_only_inside_the_runtime() -> None:
    offenders = []
    for path in sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative in RUNTIME_INSIDE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.ImportFrom) and node.module == "jobs.runtime.keys":
                names = {alias.name for alias in node.names} - ALLOWED_NAMES
                if names:
                    offenders.append(f"{relative}:{node.lineno} imports {sorted(names)}")
    assert offenders == [], "read and write the queue through jobs/runtime/queue.py:\n" + "\n".join(offenders)
