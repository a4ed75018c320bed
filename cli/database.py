"""`migrate`, `doctor` and `stack`: getting a database ready and knowing whether every backend is up."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.table import Table

from cli.common import backends, console, describe_backends, fail, run_async, settings
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime.scheduler import schedules
from settings import Settings
from store import embedded
from store.migrate import applied_migrations, check_history, load_migrations, migrate
from store.postgres import BackendUnavailable, connect, redact_url
from store.prisma_schema import live_tables, load_expected_tables, schema_differences
from store.redis import connect_redis


def migrate_command() -> None:
    """Apply pending SQL migrations (safe to run twice, or from two processes at once)."""
    found = backends()

    async def _run() -> None:
        conn = await connect(found.database_url)
        try:
            report = await migrate(conn)
        finally:
            await conn.close()
        for name in report.adopted:
            console.print(f"adopted  {name} (the web app's Prisma built the same public schema first)")
        for name in report.applied:
            console.print(f"applied  {name}")
        console.print(
            f"database is up to date ({len(report.applied)} applied now, {len(report.already_applied)} before) "
            f"on {describe_backends(found)}"
        )

    run_async(_run())


@dataclass
class Check:
    backend: str
    target: str
    ok: bool
    detail: str
    required: bool


async def _check_postgres(url: str) -> Check:
    started = time.perf_counter()
    try:
        conn = await connect(url, timeout=5)
    except BackendUnavailable as exc:
        return Check("Postgres", redact_url(url), False, str(exc), True)
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        pending = check_history(load_migrations(), await applied_migrations(conn))
        drift = [] if pending else schema_differences(load_expected_tables(), await live_tables(conn))
    except Exception as exc:
        return Check("Postgres", redact_url(url), False, str(exc), True)
    finally:
        await conn.close()
    ms = (time.perf_counter() - started) * 1000
    detail = f"PostgreSQL {version}, pgvector {vector or 'not installed'}, {ms:.0f} ms"
    if pending:
        summary = f"{detail}; {len(pending)} migrations pending: run `migrate`"
        return Check("Postgres", redact_url(url), False, summary, True)
    if drift:
        summary = f"{detail}; public schema differs from store/schema.prisma: " + "; ".join(drift[:3])
        more = f" (+{len(drift) - 3} more)" if len(drift) > 3 else ""
        return Check("Postgres", redact_url(url), False, summary + more, True)
    return Check("Postgres", redact_url(url), True, f"{detail}; schema up to date and matches schema.prisma", True)


async def _check_redis(url: str) -> Check:
    try:
        client = await connect_redis(url)
    except BackendUnavailable as exc:
        return Check("Redis", redact_url(url), False, str(exc), True)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return Check("Redis", redact_url(url), True, f"Redis {info.get('redis_version')}", True)


async def _check_neo4j(uri: str | None, user: str, password: str | None) -> Check:
    if uri is None:
        return Check("Neo4j", "-", True, "not configured: the graph lives in Postgres (runtime schema)", False)
    from neo4j import AsyncGraphDatabase

    driver = AsyncGraphDatabase.driver(uri, auth=(user, password or ""))
    try:
        await driver.verify_connectivity()
        return Check("Neo4j", uri, True, "connected", True)
    except Exception as exc:
        return Check("Neo4j", uri, False, f"cannot reach Neo4j at {uri}: {str(exc)[:160]}", True)
    finally:
        await driver.close()


async def _check_weaviate(url: str | None) -> Check:
    if url is None:
        return Check("Weaviate", "-", True, "not configured: vectors live in pgvector", False)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{url.rstrip('/')}/v1/.well-known/ready")
        ok = response.status_code == 200
        return Check("Weaviate", url, ok, "ready" if ok else f"not ready (HTTP {response.status_code})", True)
    except httpx.HTTPError as exc:
        return Check("Weaviate", url, False, f"cannot reach Weaviate at {url}: {exc}", True)


def doctor_command() -> None:
    """Check the configuration and every configured backend; exit 2 on bad configuration, 1 when a backend is down.

    A derived store (graph, vector) that cannot be opened, or whose oldest pending change is older than
    ORRERY_SYNC_LAG_ALERT_S, counts as down."""
    from cli.stores import check_derived_stores

    cfg = settings()
    try:
        scheduled = schedules(JOBS, cfg.cron)
    except ScheduleError as exc:
        fail(str(exc))
    found = backends()

    async def _run() -> list[Check]:
        password = cfg.neo4j_password.get_secret_value() if cfg.neo4j_password else None
        return [
            await _check_postgres(found.database_url),
            await _check_redis(found.redis_url),
            await _check_neo4j(cfg.neo4j_uri, cfg.neo4j_user, password),
            await _check_weaviate(cfg.weaviate_url),
            *[
                Check(c.name, c.target, c.ok, c.detail, True)
                for c in await check_derived_stores(cfg, found.database_url)
            ],
        ]

    checks = run_async(_run())
    llm = (
        "scripted sample answers (no OPENAI_API_KEY / OPENAI_BASE_URL)"
        if cfg.llm_is_scripted
        else f"{cfg.openai_base_url or 'api.openai.com'}, ingestion model {cfg.ingestion_model}"
    )
    table = Table(title=f"Orrery doctor — {describe_backends(found)}")
    for column in ("backend", "target", "status", "detail"):
        table.add_column(column, overflow="fold")  # a long URL or reason is folded, never cut off with …
    for check in checks:
        status = "[green]ok[/]" if check.ok else ("[red]DOWN[/]" if check.required else "[yellow]warn[/]")
        table.add_row(check.backend, check.target, status, check.detail)
    table.add_row("LLM", "-", "[green]ok[/]", llm)
    cron = ", ".join(f"{job.spec.name} {job.schedule.expression!r}" for job in scheduled) or "no job is scheduled"
    table.add_row("cron", "ORRERY_CRON" if cfg.cron else "-", "[green]ok[/]", cron)
    console.print(table)
    console.print("connect with:")
    _print_urls(connection_urls(cfg))
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)


stack_app = typer.Typer(help="Manage the embedded Postgres and Redis that run when no URL is configured.")


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


def _print_urls(urls: dict[str, dict[str, Any]]) -> None:
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
    """Show where the embedded servers keep their data, whether they run, and how to connect to them."""
    cfg = settings()
    data_dir = cfg.resolved_data_dir
    urls = connection_urls(cfg)
    if as_json:
        typer.echo(json.dumps({"data_dir": str(data_dir), **urls}, indent=2))
        return
    console.print(f"data directory: {data_dir}", highlight=False, soft_wrap=True)
    for name, info, variable in (("Postgres", urls["postgres"], "DATABASE_URL"), ("Redis", urls["redis"], "REDIS_URL")):
        state = "running" if info["running"] else "stopped"
        note = f" ({variable} is set, so it is not used)" if not info["embedded"] else ""
        console.print(f"embedded {name}: {state}{note}")
    console.print("connect with:" if urls["postgres"]["url"] or urls["redis"]["url"] else "nothing to connect to")
    _print_urls(urls)


@stack_app.command("stop")
def stack_stop() -> None:
    """Stop the embedded servers (data is kept; the next command starts them again)."""
    data_dir = settings().resolved_data_dir
    stopped = [
        name for name, fn in (("Postgres", embedded.stop_postgres), ("Redis", embedded.stop_redis)) if fn(data_dir)
    ]
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("reset")
def stack_reset(yes: bool = typer.Option(False, "--yes", help="Confirm deleting every embedded database.")) -> None:
    """Stop the embedded servers and DELETE their data directory."""
    data_dir = settings().resolved_data_dir
    if not yes:
        fail(f"this deletes {data_dir}; add --yes to confirm")
    embedded.remove_data_dir(data_dir)
    console.print(f"deleted {data_dir}")
