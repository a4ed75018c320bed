"""`doctor`: is every configured backend there and usable, and what was not checked.

Each check is the cheapest request that proves the thing works: a query per database, `GET /models` for the LLM
endpoint (no tokens), one two-word embedding for an embeddings endpoint, a count per derived store. What a cheap
request cannot prove (that the chat model answers in Orrery's schemas) is said, not implied.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

import httpx
import typer

from cli.common import EXIT_NOT_RIGHT, backends, console, describe_backends, fail, hint, print_json, run_async, settings
from cli.database import connection_urls, print_urls
from cli.sync import check_derived_stores
from cli.tables import Col, show, styled
from core.cron import ScheduleError
from jobs.catalog import JOBS
from jobs.runtime.scheduler import schedules
from settings import Settings
from store.migrate import applied_migrations, history_problem, load_migrations
from store.postgres import BackendUnavailable, connect, redact_url
from store.prisma_schema import live_tables, load_expected_tables, schema_differences
from store.redis import connect_redis

PROBE_TIMEOUT_S = 5.0
Status = Literal["ok", "warn", "DOWN"]

NOT_CHECKED = (
    "that the chat model answers in Orrery's schemas (no completion is requested: it would spend tokens; "
    "`run.py trigger diag.echo --wait` checks a worker end to end)",
)


@dataclass
class Check:
    backend: str
    target: str
    status: Status
    detail: str

    @property
    def down(self) -> bool:
        return self.status == "DOWN"


async def _check_postgres(url: str) -> Check:
    started = time.perf_counter()
    try:
        conn = await connect(url, timeout=PROBE_TIMEOUT_S)
    except BackendUnavailable as exc:
        return Check("Postgres", redact_url(url), "DOWN", str(exc))
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        problem = history_problem(load_migrations(), await applied_migrations(conn))
        drift = [] if problem else schema_differences(load_expected_tables(), await live_tables(conn))
    except Exception as exc:
        return Check("Postgres", redact_url(url), "DOWN", str(exc))
    finally:
        await conn.close()
    ms = (time.perf_counter() - started) * 1000
    detail = f"PostgreSQL {version}, pgvector {vector or 'not installed'}, {ms:.0f} ms"
    if problem:
        return Check("Postgres", redact_url(url), "DOWN", f"{detail}; {problem}")
    if drift:
        summary = f"{detail}; public schema differs from store/schema.prisma: " + "; ".join(drift[:3])
        more = f" (+{len(drift) - 3} more)" if len(drift) > 3 else ""
        return Check("Postgres", redact_url(url), "DOWN", summary + more)
    return Check("Postgres", redact_url(url), "ok", f"{detail}; schema up to date and matches schema.prisma")


async def _check_redis(url: str) -> Check:
    try:
        client = await connect_redis(url)
    except BackendUnavailable as exc:
        return Check("Redis", redact_url(url), "DOWN", str(exc))
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return Check("Redis", redact_url(url), "ok", f"Redis {info.get('redis_version')}")


async def _check_neo4j(uri: str | None, user: str, password: str | None) -> Check:
    if uri is None:
        return Check("Neo4j", "-", "ok", "not configured: the graph lives in Postgres (runtime schema)")
    from neo4j import AsyncGraphDatabase

    driver = AsyncGraphDatabase.driver(uri, auth=(user, password or ""))
    try:
        await driver.verify_connectivity()
        return Check("Neo4j", uri, "ok", "connected")
    except Exception as exc:
        return Check("Neo4j", uri, "DOWN", f"cannot reach Neo4j at {uri}: {str(exc)[:160]}")
    finally:
        await driver.close()


async def _check_weaviate(url: str | None) -> Check:
    if url is None:
        return Check("Weaviate", "-", "ok", "not configured: vectors live in pgvector")
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            response = await client.get(f"{url.rstrip('/')}/v1/.well-known/ready")
        ok = response.status_code == 200
        return Check(
            "Weaviate", url, "ok" if ok else "DOWN", "ready" if ok else f"not ready (HTTP {response.status_code})"
        )
    except httpx.HTTPError as exc:
        return Check("Weaviate", url, "DOWN", f"cannot reach Weaviate at {url}: {exc}")


def _chat_models(cfg: Settings) -> list[str]:
    return sorted({cfg.ingestion_model, cfg.insight_model, cfg.proactive_prompts_model, cfg.cycle_report_model})


async def check_llm(cfg: Settings) -> Check:
    """The agents' LLM: `GET {base}/models` with the key, which every OpenAI-compatible server answers without
    spending a token: a closed port, a refused key and a model the endpoint does not offer all show here."""
    problem = cfg.llm_problem()
    if problem is not None:
        return Check("LLM", "-", "DOWN", f"{problem}; workers refuse to start")
    if cfg.llm_is_scripted:
        detail = "scripted sample answers (ORRERY_LLM=scripted): for the demo and tests only; not probed"
        return Check("LLM", "scripted", "warn", detail)
    from agents.llm.client import OPENAI_BASE_URL

    base = (cfg.openai_base_url or OPENAI_BASE_URL).rstrip("/")
    key = cfg.openai_api_key.get_secret_value() if cfg.openai_api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    target = redact_url(base)
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            response = await client.get(f"{base}/models", headers=headers)
    except httpx.HTTPError as exc:
        return Check("LLM", target, "DOWN", f"cannot reach {target}: {exc or type(exc).__name__}")
    if response.status_code in (401, 403):
        return Check(
            "LLM", target, "DOWN", f"the endpoint refused the key (HTTP {response.status_code}): check OPENAI_API_KEY"
        )
    if response.status_code == 404:
        return Check(
            "LLM", target, "warn", "reachable, but it lists no models (GET /models: 404): key and models not checked"
        )
    if response.status_code != 200:
        return Check("LLM", target, "DOWN", f"GET /models answered HTTP {response.status_code}")
    try:
        offered = {str(item["id"]) for item in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return Check("LLM", target, "warn", "reachable; its model list is unreadable: models not checked")
    wanted = _chat_models(cfg)
    missing = [model for model in wanted if model not in offered]
    if missing:
        detail = f"reachable, key accepted; it does not list {', '.join(missing)} (ORRERY_*_MODEL)"
        return Check("LLM", target, "warn", detail)
    return Check("LLM", target, "ok", f"reachable, key accepted, offers {', '.join(wanted)}")


async def check_embeddings(cfg: Settings) -> Check:
    """The embedder: an endpoint embeds two words (its key, model and dimension all checked, a few tokens); the local
    model is only found installed, not loaded (loading it takes seconds; `recall` does)."""
    if cfg.embeddings_base_url is None:
        import importlib.util

        from agents.embeddings import LOCAL_MODEL

        if importlib.util.find_spec("sentence_transformers") is None:
            detail = "no ORRERY_EMBEDDINGS_BASE_URL and the local model is not installed (the local-embeddings extra)"
            return Check("embeddings", "local", "DOWN", detail)
        return Check("embeddings", "local", "ok", f"local {LOCAL_MODEL}: installed, not loaded (takes seconds)")
    from agents.embeddings import OpenAIEmbedder
    from agents.llm import CallContext, InMemoryCallLog
    from core.errors import JobError

    target = redact_url(cfg.embeddings_base_url)
    once = cfg.model_copy(update={"llm_max_retries": 0, "llm_timeout_s": PROBE_TIMEOUT_S})  # no retry, no wait
    embedder = OpenAIEmbedder.from_settings(once, InMemoryCallLog())
    try:
        [vector] = await embedder.embed(["doctor probe"], context=CallContext(user_id="doctor", agent="doctor"))
    except JobError as exc:
        return Check("embeddings", target, "DOWN", str(exc))
    finally:
        await embedder.aclose()
    return Check("embeddings", target, "ok", f"{cfg.embeddings_model}: {len(vector)} dimensions, as configured")


def doctor_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Check the configuration and every configured backend: Postgres (and its migrations), Redis, Neo4j or the
    graph in Postgres, Weaviate or pgvector, the LLM endpoint and the embeddings, each with a cheap request; and say
    what was not checked. Exit 2 on bad configuration, 1 when something is down.

    A derived store (graph, vector) that cannot be opened, or whose oldest pending change is older than
    ORRERY_SYNC_LAG_ALERT_S, counts as down.

    Examples:

    \b
      run.py doctor
      run.py doctor --json | jq .ok
    """
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
                Check(c.name, c.target, "ok" if c.ok else "DOWN", c.detail)
                for c in await check_derived_stores(cfg, found.database_url)
            ],
            await check_llm(cfg),
            await check_embeddings(cfg),
        ]

    checks = run_async(_run())
    cron = ", ".join(f"{job.spec.name} {job.schedule.expression!r}" for job in scheduled) or "no job is scheduled"
    checks.append(Check("cron", "ORRERY_CRON" if cfg.cron else "-", "ok", cron))
    urls = connection_urls(cfg)
    healthy = not any(check.down for check in checks)
    if as_json:
        print_json(
            {
                "ok": healthy,
                "backends": describe_backends(found),
                "checks": [asdict(check) for check in checks],
                "not_checked": list(NOT_CHECKED),
                "urls": urls,
            }
        )
    else:
        colour = {"ok": "green", "warn": "yellow", "DOWN": "red"}
        rows = [(c.backend, c.target, styled(f"[{colour[c.status]}]{c.status}[/]"), c.detail) for c in checks]
        columns = [Col("backend", key=True), Col("target"), Col("status", key=True), Col("detail")]
        show(console, columns, rows, title=f"Orrery doctor — {describe_backends(found)}")
        for item in NOT_CHECKED:
            hint(f"not checked: {item}")
        console.print("connect with:")
        print_urls(urls)
    if not healthy:
        raise typer.Exit(EXIT_NOT_RIGHT)
