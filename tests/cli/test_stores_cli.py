"""The commands that operate the derived stores, as an operator runs them (`run.py` subprocesses on the test
Postgres and Redis, the local embedding model for vectors): sync status and run, health --stores, doctor, reconcile,
rebuild, reembed and forget-user, with their exit codes and one-line errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cli.session import Session
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import UNRECORDED_DEAD_KEY, in_progress_key, job_key, outcome_key, queue_key
from settings import Settings
from store import forget, outbox
from store.context import turn_context_key
from store.reconcile import graph_drift, vector_drift
from tests.cli.runner import assert_one_line_error, run_cli
from tests.jobs.conftest import cli_env
from tests.store.derived_memory import Memory, drain, open_stores, remember, store_settings
from tests.store.orphans import delete_user_row_only


@pytest.fixture
def env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(database_url, redis_url, tmp_path)


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return store_settings(database_url, redis_url, tmp_path)


@pytest.fixture
async def session(settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Session]:
    async with open_stores(settings, pool, redis_client) as opened:
        yield opened


async def synced(pool: asyncpg.Pool, session: Session) -> tuple[Memory, Memory]:
    ana, bo = await remember(pool, "Ana"), await remember(pool, "Bo")
    await drain(session)
    return ana, bo


async def drift_totals(pool: asyncpg.Pool, session: Session, user_id: str) -> tuple[int, int]:
    vector = await session.vector()
    graph = await graph_drift(pool, await session.graph(), user_id)
    return graph.total, (await vector_drift(pool, vector, user_id, vector.model_version)).total


def ran(*args: str, env: dict[str, str], code: int = 0) -> Any:
    """Run the command, check its exit code, and return its --json output parsed (or its stdout)."""
    result = run_cli(*args, env=env, timeout=180)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


# --- sync status, sync run, health --stores, doctor ----------------------------------------------------------------


async def test_sync_status_counts_the_backlog_and_fails_past_the_lag_alert(
    pool: asyncpg.Pool, env: dict[str, str]
) -> None:
    ana = await remember(pool)  # 7 entities, one row each per store, not applied
    await pool.execute(
        "UPDATE runtime.outbox SET attempts = 2, last_error = 'graph store unreachable' "
        "WHERE id = (SELECT min(id) FROM runtime.outbox WHERE store = 'graph')"
    )
    status = ran("sync", "status", "--json", env=env)
    stores = {s["store"]: s for s in status["stores"]}
    assert status["lag_alert_s"] == 300
    assert (stores["graph"]["rows"], stores["graph"]["failing"], stores["vector"]["rows"]) == (7, 1, 7)
    assert stores["graph"]["last_error"] == "graph store unreachable" and not stores["graph"]["lagging"]

    await pool.execute("UPDATE runtime.outbox SET created_at = now() - interval '10 minutes' WHERE store = 'graph'")
    lagging = ran("sync", "status", "--json", env=env, code=1)
    flags = {s["store"]: (s["lagging"], s["oldest_lag_s"] >= 600) for s in lagging["stores"]}
    assert flags == {"graph": (True, True), "vector": (False, False)}
    assert "LAGGING" in ran("sync", "status", env=env, code=1)
    ran("sync", "status", "--json", env={**env, "ORRERY_SYNC_LAG_ALERT_S": "3600"})

    health = run_cli("health", "--stores", env=env)
    assert health.returncode == 1 and "derived store(s) lagging: graph" in health.stderr, health.stderr
    assert "graph: LAGGING" in health.stdout and ana.user_id not in health.stdout
    relaxed = run_cli("health", "--stores", env={**env, "ORRERY_SYNC_LAG_ALERT_S": "3600"})
    assert relaxed.returncode == 1 and "no live worker" in relaxed.stderr  # only the missing workers fail it now


async def test_sync_run_applies_rows_waiting_out_a_backoff(pool: asyncpg.Pool, env: dict[str, str]) -> None:
    ana = await remember(pool)
    await pool.execute(
        "UPDATE runtime.outbox SET attempts = 3, next_attempt_at = now() + interval '1 hour', "
        "last_error = 'graph store unreachable' WHERE store = 'graph'"
    )
    out = ran("sync", "run", "--store", "graph", env=env)
    assert "graph: 7 outbox rows applied" in out, out
    assert {b.store: b.rows for b in await outbox.backlog(pool)} == {"graph": 0, "vector": 7}
    nodes = await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = $1", ana.user_id)
    assert nodes == 7


async def test_doctor_reports_each_derived_store_and_its_lag(pool: asyncpg.Pool, env: dict[str, str]) -> None:
    healthy = run_cli("doctor", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    rows = {line.split("│")[1].strip(): line for line in healthy.stdout.splitlines() if "store " in line}
    assert "postgres" in rows["graph store"] and "ok" in rows["graph store"]
    assert "pgvector" in rows["vector store"] and "0 rows pending" in rows["vector store"]

    await remember(pool)
    await pool.execute("UPDATE runtime.outbox SET created_at = now() - interval '1 hour' WHERE store = 'vector'")
    lagging = run_cli("doctor", env=env)
    assert lagging.returncode == 1
    assert "LAGGING" in next(line for line in lagging.stdout.splitlines() if "vector store" in line)


# --- reconcile, rebuild, reembed ---------------------------------------------------------------------------------


async def test_reconcile_reports_drift_per_user_and_type_and_repair_fixes_it(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    ana, bo = await synced(pool, session)
    await pool.execute("DELETE FROM runtime.graph_nodes WHERE node_key = $1", ana.concepts[0])
    await pool.execute(
        "UPDATE runtime.vector_items SET content_hash = 'edited' WHERE source_entity_id = $1", ana.units[1]
    )

    found = ran("reconcile", "--user", ana.user_id, "--json", env=env, code=1)
    assert found["users_checked"] == 1 and found["drift_left"] == 2 and not found["repaired"]
    by_store = {entry["store"]: entry for entry in found["drift"]}
    [concepts] = by_store["graph"]["kinds"]
    assert (concepts["kind"], concepts["missing"], concepts["examples"]["missing"]) == ("Concept", 1, [ana.concepts[0]])
    [units] = by_store["vector"]["kinds"]
    assert (units["kind"], units["changed"], units["examples"]["changed"]) == ("MemoryUnit", 1, [ana.units[1]])
    assert "1 users drifted, 1 missing" in ran("reconcile", env=env, code=1)  # every user, as a table

    repaired = ran("reconcile", "--repair", "--json", env=env)
    assert repaired["repaired"] and repaired["drift_left"] == 0 and repaired["users_checked"] == 2
    assert {store: applied["failed"] for store, applied in repaired["applied"].items()} == {"graph": 0, "vector": 0}
    assert await drift_totals(pool, session, ana.user_id) == (0, 0)
    assert await drift_totals(pool, session, bo.user_id) == (0, 0)
    assert ran("reconcile", "--json", env=env)["drift"] == []


async def test_reconcile_finds_the_items_of_users_postgres_no_longer_has_and_repair_removes_them(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    """Ana's row goes and both stores keep her items (their foreign keys bypassed: tests/store/orphans.py). A
    per-user comparison would never look at her; the orphan scan does, and --repair deletes her items."""
    ana, bo = await synced(pool, session)
    await delete_user_row_only(pool, ana.user_id)

    found = ran("reconcile", "--json", env=env, code=1)
    assert found["users_checked"] == 1 and found["drift"] == [] and found["drift_left"] == 2
    assert found["orphans"] == {
        "graph": {"users": 1, "examples": [ana.user_id], "removed": None, "left": 1, "refused": None},
        "vector": {"users": 1, "examples": [ana.user_id], "removed": None, "left": 1, "refused": None},
    }
    text = ran("reconcile", env=env, code=1)
    assert f"orphans (users a store holds that Postgres does not have): graph 1 (e.g. {ana.user_id})" in text, text
    assert "run.py reconcile --repair` to fix it" in text

    repaired = ran("reconcile", "--repair", "--json", env=env)
    assert repaired["drift_left"] == 0
    assert {store: (o["removed"], o["left"]) for store, o in repaired["orphans"].items()} == {
        "graph": (7, 0),
        "vector": (5, 0),
    }
    for table in ("graph_nodes", "vector_items"):
        assert await pool.fetchval(f"SELECT count(*) FROM runtime.{table} WHERE user_id = $1", ana.user_id) == 0
    assert await drift_totals(pool, session, bo.user_id) == (0, 0)
    clean = ran("reconcile", "--json", env=env)
    assert {store: o["users"] for store, o in clean["orphans"].items()} == {"graph": 0, "vector": 0}
    assert ran("reconcile", "--user", bo.user_id, "--json", env=env)["orphans"] is None  # one user: no scan


async def test_reconcile_removes_no_orphans_when_most_of_a_stores_users_are_unknown_to_postgres(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    """A graph holding 11 users Postgres never had beside its 2 known ones looks like another database's store (a
    wrong NEO4J_URI), not like leftovers: reported, nothing deleted."""
    await synced(pool, session)
    strangers = [str(uuid.uuid4()) for _ in range(11)]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # as in tests/store/orphans.py
        await conn.executemany(
            "INSERT INTO runtime.graph_nodes (label, node_key, user_id, content_hash) VALUES ('User', $1, $1, 'h')",
            [(stranger,) for stranger in strangers],
        )
    refused = ran("reconcile", "--repair", "--json", env=env, code=1)
    graph = refused["orphans"]["graph"]
    assert (graph["users"], graph["removed"], graph["left"]) == (11, None, 11)
    assert graph["refused"].startswith("11 of the 13 users the store holds have no row in Postgres")
    assert refused["orphans"]["vector"]["users"] == 0
    assert await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = ANY($1)", strangers) == 11
    text = ran("reconcile", "--repair", env=env, code=1)
    assert "Nothing removed; remove users one by one with `forget-user`" in text, text


async def test_rebuild_reconstructs_an_emptied_store_for_one_user(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    ana, bo = await synced(pool, session)
    bo_nodes = await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = $1", bo.user_id)
    await (await session.graph()).delete_user(ana.user_id)
    await (await session.vector()).delete_user(ana.user_id)
    assert await drift_totals(pool, session, ana.user_id) == (16, 5)  # 7 nodes and 9 relationships; 5 items

    out = ran("rebuild", "--graph", "--user", ana.user_id, env=env)
    assert "graph: 1 users cleared" in out and "7 outbox rows applied" in out, out
    out = ran("rebuild", "--vector", "--user", ana.user_id, env=env)
    assert "5 outbox rows applied" in out, out
    assert await drift_totals(pool, session, ana.user_id) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = $1", bo.user_id) == bo_nodes


async def test_reembed_rewrites_items_of_another_model(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    ana, bo = await synced(pool, session)
    await pool.execute(
        "UPDATE runtime.vector_items SET embedding_model_version = 'old-model' WHERE user_id = $1", ana.user_id
    )
    out = ran("reembed", env=env)
    assert "vector: 5 items to re-embed with all-MiniLM-L6-v2" in out and "5 outbox rows applied" in out, out
    models = await pool.fetch("SELECT DISTINCT embedding_model_version AS m FROM runtime.vector_items")
    assert [row["m"] for row in models] == ["all-MiniLM-L6-v2"]
    assert "vector: 0 items to re-embed" in ran("reembed", "--user", bo.user_id, env=env)
    assert "vector: 5 items to re-embed" in ran("reembed", "--all", "--user", bo.user_id, env=env)


# --- forget-user -------------------------------------------------------------------------------------------------


async def footprint_of(user: Memory, redis: aioredis.Redis, pool: asyncpg.Pool) -> dict[str, Any]:
    """Seed what the runtime keeps about a user besides memory: an LLM call, a queued ingestion (ledger row and Redis
    job), a turn context, a dead letter the ledger could not hold, an outcome."""
    await pool.execute(
        "INSERT INTO runtime.llm_calls (user_id, agent, model, endpoint, prompt_name, prompt_version, purpose, "
        "response_format, attempt, latency_ms, outcome) "
        "VALUES ($1, 'ingestion', 'm', 'e', 'ingestion', 'v1', 'answer', 'json_schema', 1, 5, 'ok')",
        user.user_id,
    )
    queued = await enqueue(redis, pool, INGEST, {"conversation_id": user.conversation_id}, defer_by=timedelta(hours=1))
    await redis.set(turn_context_key(user.conversation_id), "{}")
    record = json.dumps({"f": "ingest", "k": {"conversation_id": user.conversation_id}})
    await redis.lpush(UNRECORDED_DEAD_KEY, json.dumps({"job_id": "x", "record": record}))  # type: ignore[misc]
    await redis.set(outcome_key(queued.job_id), "{}")
    return {"job_id": queued.job_id}


async def test_forget_user_dry_run_then_deletes_everything_and_touches_no_one_else(
    pool: asyncpg.Pool, session: Session, redis_client: aioredis.Redis, env: dict[str, str]
) -> None:
    ana, bo = await synced(pool, session)
    ana_job = (await footprint_of(ana, redis_client, pool))["job_id"]
    bo_job = (await footprint_of(bo, redis_client, pool))["job_id"]
    bo_before = ran("forget-user", bo.user_id, "--json", env=env)

    dry = ran("forget-user", ana.user_id, "--json", env=env)
    assert not dry["deleted"] and dry["after"] is None
    before = dry["before"]
    assert before["postgres"]["public.users"] == 1 and before["postgres"]["public.memory_units"] == 2
    assert before["postgres"]["public.conversation_messages"] == 1 and before["postgres"]["runtime.llm_calls"] == 1
    # the job runs: the ingestion's and the projection refresh the vector sync requested (queued, debounced)
    assert before["postgres"]["runtime.job_runs"] == 2 and before["postgres"]["runtime.vector_items"] == 5
    assert before["graph"] == {"nodes": 7, "relationships": 9}  # with AUTHORED_BY x2, a MENTIONS, HIGHLIGHTS x2
    assert sum(before["vector"].values()) == 5
    assert before["redis"] == {
        "turn contexts": 1,
        "queued jobs": 2,
        "running jobs": 0,
        "unrecorded dead letters": 1,
        "job outcomes": 1,
    }
    assert ran("forget-user", ana.user_id, "--json", env=env)["before"] == before  # the dry run changed nothing
    assert "add --yes to delete" in ran("forget-user", ana.user_id, env=env)

    done = ran("forget-user", ana.user_id, "--yes", "--json", env=env)
    assert done["deleted"] and done["left"] == 0
    assert all(count == 0 for counts in done["after"].values() for count in counts.values()), done["after"]
    assert done["tombstones_dropped"] == 14  # one per entity and store, dropped once both stores were empty
    assert await redis_client.zscore(queue_key("interactive"), ana_job) is None
    assert not await redis_client.exists(job_key(ana_job), turn_context_key(ana.conversation_id), outcome_key(ana_job))
    assert await forget.count_postgres(pool, ana.user_id, [ana.conversation_id]) == dict.fromkeys(
        done["after"]["postgres"], 0
    )

    assert ran("forget-user", bo.user_id, "--json", env=env) == bo_before  # tenant isolation
    assert await redis_client.zscore(queue_key("interactive"), bo_job) is not None
    assert await drift_totals(pool, session, bo.user_id) == (0, 0)
    again = run_cli("forget-user", ana.user_id, "--yes", env=env)  # rerunning finds nobody and says so (issue 21)
    assert_one_line_error(again, "Postgres has no such user and nothing anywhere names them")
    assert_one_line_error(run_cli("forget-user", "nobody", "--yes", env=env), "no user 'nobody'")


async def test_forget_user_finishes_after_stopping_halfway_with_tombstones_in_the_outbox(
    pool: asyncpg.Pool, session: Session, redis_client: aioredis.Redis, env: dict[str, str]
) -> None:
    ana, bo = await synced(pool, session)
    await forget.delete_postgres(pool, ana.user_id, [ana.conversation_id])  # stopped after step 2
    status = {s["store"]: s["rows"] for s in ran("sync", "status", "--json", env=env)["stores"]}
    assert status == {"graph": 7, "vector": 7}  # nothing half-forgotten is invisible
    done = ran("forget-user", ana.user_id, "--yes", "--json", env=env)  # the rerun finishes steps 3 and 4
    assert done["before"]["postgres"]["public.users"] == 0  # only the tombstones named them
    assert done["left"] == 0 and done["tombstones_dropped"] == 14
    assert await drift_totals(pool, session, bo.user_id) == (0, 0)


async def test_forget_user_after_the_dispatcher_applied_the_tombstones_finds_nobody(
    pool: asyncpg.Pool, session: Session, env: dict[str, str]
) -> None:
    ana, _ = await synced(pool, session)
    await forget.delete_postgres(pool, ana.user_id, [ana.conversation_id])  # stopped after step 2 …
    await drain(session)  # … and the dispatcher deleted every tombstoned entity from both stores
    left = ran("forget-user", ana.user_id, "--yes", "--json", env=env)  # the projection refresh still queued
    assert left["before"]["redis"]["queued jobs"] == 1 and left["left"] == 0
    assert_one_line_error(run_cli("forget-user", ana.user_id, "--yes", env=env), "nothing anywhere names them")


async def test_a_running_job_of_the_user_is_left_to_finish_and_reported(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, env: dict[str, str]
) -> None:
    ana = await remember(pool)
    job = (await footprint_of(ana, redis_client, pool))["job_id"]
    await redis_client.set(in_progress_key(job), b"1", ex=60)
    result = ran("forget-user", ana.user_id, "--yes", "--json", env=env, code=1)
    assert result["left"] == 1 and result["after"]["redis"]["running jobs"] == 1
    assert await redis_client.exists(job_key(job))  # a running job's record is never pulled from under its worker


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    assert_one_line_error(run_cli("rebuild", env=env), "choose one store: --graph or --vector")
    assert_one_line_error(run_cli("rebuild", "--graph", "--vector", env=env), "choose one store")
    assert_one_line_error(run_cli("rebuild", "--graph", "--user", "nobody", env=env), "no user nobody in Postgres")
    assert_one_line_error(run_cli("reembed", "--user", "nobody", env=env), "no user nobody in Postgres")
    assert_one_line_error(run_cli("sync", "run", "--store", "cache", env=env), "unknown store 'cache'")
    assert_one_line_error(run_cli("forget-user", " ", env=env), "is not an id")
    assert_one_line_error(run_cli("reconcile", "--user", "a\tb", env=env), "is not an id")


async def test_an_unreachable_graph_store_is_one_line_for_commands_and_a_down_row_for_doctor(
    pool: asyncpg.Pool, env: dict[str, str]
) -> None:
    away = {**env, "NEO4J_URI": "bolt://127.0.0.1:9"}  # nothing listens on the discard port
    await remember(pool)
    assert_one_line_error(run_cli("reconcile", env=away), "127.0.0.1:9")
    assert_one_line_error(run_cli("sync", "run", "--store", "graph", env=away), "127.0.0.1:9")
    doctor = run_cli("doctor", env=away)
    assert doctor.returncode == 1
    graph_row = next(line for line in doctor.stdout.splitlines() if "graph store" in line)
    assert "DOWN" in graph_row and "cannot open it" in graph_row, doctor.stdout
