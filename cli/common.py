"""What every CLI command shares: settings, backends, one way to fail cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from core.cron import ScheduleError
from settings import Settings, SettingsError, get_settings
from store.embedded import Backends, EmbeddedStackError, resolve_backends
from store.migrate import MigrationError
from store.postgres import BackendUnavailable

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

EXIT_USAGE = 2
"""Bad configuration, bad arguments or an unreachable backend: the operator has to change something."""


class CommandError(Exception):
    """A command cannot go on; the message is shown as is, without a traceback."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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


def describe_backends(found: Backends) -> str:
    pg = "embedded Postgres" if found.postgres_embedded else "Postgres from DATABASE_URL"
    rd = "embedded Redis" if found.redis_embedded else "Redis from REDIS_URL"
    return f"{pg}, {rd}"


EXPECTED_ERRORS = (BackendUnavailable, MigrationError, EmbeddedStackError, SettingsError, ScheduleError, CommandError)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one red line and exit code 2."""
    try:
        return asyncio.run(coro)
    except EXPECTED_ERRORS as exc:
        fail(str(exc))
