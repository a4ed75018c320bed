"""What every CLI command shares: settings, backends, the schema check, one way to fail cleanly, how to name itself.

Exit codes, the one convention: 0 done or healthy; 1 the thing checked is not right (EXIT_NOT_RIGHT); 2 bad input,
configuration or an unknown id, or a backend that cannot be used (EXIT_USAGE), always as one `error:` line; 3 a wait
that gave up (`trigger --wait`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from core.cron import ScheduleError
from jobs.runtime import loop as event_loop
from jobs.runtime.loop import EventLoopChoice
from settings import Settings, SettingsError, get_settings
from store.embedded import Backends, EmbeddedStackError, resolve_backends
from store.migrate import MigrationError
from store.postgres import BackendUnavailable

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent

EXIT_NOT_RIGHT = 1
"""The thing checked is not right: unhealthy, drift found or left, rows failed, a followed job ended dead."""
EXIT_USAGE = 2
"""Bad configuration, bad arguments, an unknown id or an unreachable backend: the operator has to change something."""


class CommandError(Exception):
    """A command cannot go on; the message is shown as is, without a traceback."""


def invocation() -> str:
    """How to run this command line again, as the operator can type it from where they are: `.venv/bin/python
    run.py` from a fresh clone (bare `python run.py` fails without the venv's packages), `python run.py` once the
    venv is activated or in the image."""
    executable = Path(sys.executable)
    script = Path(os.path.relpath(ROOT / "run.py"))
    on_path = shutil.which("python")
    if on_path is not None and Path(on_path).absolute() == executable.absolute():
        return f"python {script}"
    try:
        shown = Path(os.path.relpath(executable))
    except ValueError:  # another drive (Windows)
        shown = executable
    return f"{shown if not str(shown).startswith('..') else executable} {script}"


_COMMAND_HINT = re.compile(r"`run\.py ")


def runnable(text: str) -> str:
    """`run.py migrate` in a message from a lower layer, written as a command that works here."""
    return _COMMAND_HINT.sub(lambda _: f"`{invocation()} ", text)


def hint(message: str) -> None:
    """A line of advice on stdout, its `run.py …` commands written as they run here."""
    console.print(runnable(message), highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(runnable(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """One yellow line on stderr: something the operator should know that does not stop the command."""
    err_console.print(f"[yellow]warning:[/] {escape(runnable(message))}", highlight=False, soft_wrap=True)


def settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        fail(str(exc))


_backends: Backends | None = None


def backends() -> Backends:
    """Resolve (and start, when embedded) Postgres and Redis once per process."""
    global _backends
    if _backends is None:
        cfg = settings()
        try:
            _backends = resolve_backends(cfg.database_url, cfg.redis_url, cfg.resolved_data_dir)
        except EmbeddedStackError as exc:
            fail(str(exc))
    return _backends


def migrated() -> Backends:
    """backends(), refusing a database that is not migrated (or was migrated by an older or newer Orrery) with one
    line and exit 2, before a command touches a table: the first missing relation used to be a 75-line traceback.
    Inside a command's coroutine, `await require_migrated(url)` does the same."""
    found = backends()
    run_async(require_migrated(found.database_url))
    return found


async def require_migrated(database_url: str) -> None:
    """CommandError (one line, exit 2) unless every migration of this code, and only those, is applied."""
    from store.migrate import schema_problem
    from store.postgres import connect

    conn = await connect(database_url)
    try:
        problem = await schema_problem(conn)
    finally:
        await conn.close()
    if problem is not None:
        raise CommandError(problem)


def describe_backends(found: Backends) -> str:
    pg = "embedded Postgres" if found.postgres_embedded else "Postgres from DATABASE_URL"
    rd = "embedded Redis" if found.redis_embedded else "Redis from REDIS_URL"
    return f"{pg}, {rd}"


EXPECTED_ERRORS = (BackendUnavailable, MigrationError, EmbeddedStackError, SettingsError, ScheduleError, CommandError)


def run_async(coro: Coroutine[Any, Any, T], *, loop: EventLoopChoice = "asyncio") -> T:
    """Run a command's coroutine (on asyncio's loop, or the one `loop` names: the worker's choice); expected
    failures become one red line and exit code 2."""
    try:
        return event_loop.run(coro, loop)
    except EXPECTED_ERRORS as exc:
        fail(str(exc))


def print_json(value: Any) -> None:
    """Machine-readable output on stdout: plain JSON (no colour, no wrapping), whatever the terminal."""
    typer.echo(json.dumps(value, indent=2, default=str))
