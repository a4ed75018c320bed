"""`migrate` and `stack`: getting a database ready, and the embedded servers that run when no URL is set."""

from __future__ import annotations

from typing import Any

import typer

from cli.common import backends, console, describe_backends, fail, print_json, run_async, settings
from settings import Settings
from store import embedded
from store.migrate import MigrationReport, migrate
from store.postgres import connect, redact_url


def migrate_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Apply pending SQL migrations (safe to run twice, or from two processes at once).

    Examples:

    \b
      run.py migrate
      run.py migrate --json
    """
    found = backends()

    async def _run() -> MigrationReport:
        conn = await connect(found.database_url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    report = run_async(_run())
    if as_json:
        print_json({"applied": report.applied, "already_applied": report.already_applied, "adopted": report.adopted})
        return
    for name in report.adopted:
        console.print(f"adopted  {name} (the web app's Prisma built the same public schema first)")
    for name in report.applied:
        console.print(f"applied  {name}")
    console.print(
        f"database is up to date ({len(report.applied)} applied now, {len(report.already_applied)} before) "
        f"on {describe_backends(found)}"
    )


stack_app = typer.Typer(
    help="Manage the embedded Postgres and Redis that run when no URL is configured.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def connection_urls(cfg: Settings) -> dict[str, dict[str, Any]]:
    """Where Postgres and Redis are, in forms other programs take: for the embedded stack, the URL psql, node's pg
    and Prisma accept and the Redis socket path ioredis takes; a configured URL is shown with its password as ***."""
    data_dir = cfg.resolved_data_dir
    postgres: dict[str, Any] = {"embedded": cfg.database_url is None, "running": embedded.postgres_running(data_dir)}
    if cfg.database_url is not None:
        postgres["url"] = postgres["asyncpg_url"] = redact_url(cfg.database_url)
    else:
        found = embedded.postgres_urls(data_dir) if postgres["running"] else None
        postgres["url"], postgres["asyncpg_url"] = found or (None, None)
    redis: dict[str, Any] = {"embedded": cfg.redis_url is None, "running": embedded.redis_running(data_dir)}
    if cfg.redis_url is not None:
        redis["url"] = redact_url(cfg.redis_url)
    else:
        socket = embedded.redis_socket(data_dir)
        redis["url"] = f"unix://{socket}?db=0" if redis["running"] else None
        redis["socket"] = str(socket) if redis["running"] else None
    return {"postgres": postgres, "redis": redis}


def print_urls(urls: dict[str, dict[str, Any]]) -> None:
    """Outside any table, one URL per line and never wrapped, so it can be copied whole."""
    postgres, redis = urls["postgres"], urls["redis"]
    if postgres["url"]:
        console.print(f"  Postgres (psql, node pg, Prisma): {postgres['url']}", highlight=False, soft_wrap=True)
    if postgres["asyncpg_url"] != postgres["url"]:
        console.print(f"  Postgres (asyncpg, psql): {postgres['asyncpg_url']}", highlight=False, soft_wrap=True)
    if redis["url"]:
        console.print(f"  Redis (redis-py, arq): {redis['url']}", highlight=False, soft_wrap=True)
    if redis.get("socket"):
        socket = redis["socket"]
        console.print(
            f'  Redis socket (ioredis: new Redis("{socket}"); redis-cli -s): {socket}', highlight=False, soft_wrap=True
        )


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output, URLs included.")) -> None:
    """Show where the embedded servers keep their data, whether they run, and how to connect to them.

    Examples:

    \b
      run.py stack status
      run.py stack status --json
    """
    cfg = settings()
    data_dir = cfg.resolved_data_dir
    urls = connection_urls(cfg)
    if as_json:
        print_json({"data_dir": str(data_dir), **urls})
        return
    console.print(f"data directory: {data_dir}", highlight=False, soft_wrap=True)
    for name, info, variable in (("Postgres", urls["postgres"], "DATABASE_URL"), ("Redis", urls["redis"], "REDIS_URL")):
        state = "running" if info["running"] else "stopped"
        note = f" ({variable} is set, so it is not used)" if not info["embedded"] else ""
        console.print(f"embedded {name}: {state}{note}")
    console.print("connect with:" if urls["postgres"]["url"] or urls["redis"]["url"] else "nothing to connect to")
    print_urls(urls)


@stack_app.command("stop")
def stack_stop() -> None:
    """Stop the embedded servers (data is kept; the next command starts them again).

    Example: run.py stack stop"""
    data_dir = settings().resolved_data_dir
    stopped = [
        name for name, fn in (("Postgres", embedded.stop_postgres), ("Redis", embedded.stop_redis)) if fn(data_dir)
    ]
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("reset")
def stack_reset(yes: bool = typer.Option(False, "--yes", help="Confirm deleting every embedded database.")) -> None:
    """Stop the embedded servers and DELETE their data directory.

    Example: run.py stack reset --yes"""
    data_dir = settings().resolved_data_dir
    if not yes:
        fail(f"this deletes {data_dir}; add --yes to confirm")
    embedded.remove_data_dir(data_dir)
    console.print(f"deleted {data_dir}")
