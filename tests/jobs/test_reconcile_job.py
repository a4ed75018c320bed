"""The nightly `reconcile` job through a real worker: it finds drift in both stores, records outbox rows for it,
starts the dispatchers, and the stores match Postgres again when the burst ends; with repair=false it only
reports."""

from __future__ import annotations

import json

import asyncpg
import redis.asyncio as aioredis

from core.cron import parse_cron
from jobs.catalog import JOBS
from jobs.reconcile import RECONCILE
from jobs.runtime.enqueue import enqueue
from jobs.sync import SYNC_STORES
from settings import Settings
from store import outbox
from store.reconcile import graph_drift, vector_drift
from tests.jobs.conftest import BurstRunner
from tests.store.derived_memory import Memory, open_stores, remember
from tests.store.orphans import delete_user_row_only


async def synced(pool: asyncpg.Pool, redis: aioredis.Redis, run_burst: BurstRunner) -> tuple[Memory, Memory]:
    ana, bo = await remember(pool, "Ana"), await remember(pool, "Bo")
    for store in outbox.STORES:
        await enqueue(redis, pool, SYNC_STORES, {"store": store})
    await run_burst()
    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]
    return ana, bo


async def drift_totals(settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, user_id: str) -> list[int]:
    async with open_stores(settings, pool, redis) as session:
        vector = await session.vector()
        graph = await graph_drift(pool, await session.graph(), user_id)
        vectors = await vector_drift(pool, vector, user_id, vector.model_version)
    return [graph.total, vectors.total]


async def result_of(pool: asyncpg.Pool) -> dict[str, object]:
    row = await pool.fetchrow(
        "SELECT state, result FROM runtime.job_runs WHERE job_name = 'reconcile' ORDER BY id DESC"
    )
    assert row is not None and row["state"] == "succeeded", row
    result: dict[str, object] = json.loads(row["result"]) if isinstance(row["result"], str) else row["result"]
    return result


async def inject_drift(pool: asyncpg.Pool, ana: Memory) -> None:
    await pool.execute("DELETE FROM runtime.graph_nodes WHERE node_key = $1", ana.units[0])
    await pool.execute("DELETE FROM runtime.vector_items WHERE source_entity_id = $1", ana.concepts[1])


async def test_the_nightly_job_repairs_drift_in_both_stores_through_the_outbox(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    ana, bo = await synced(pool, redis_client, run_burst)
    await inject_drift(pool, ana)
    assert await drift_totals(settings, pool, redis_client, ana.user_id) == [1, 1]

    assert (await enqueue(redis_client, pool, RECONCILE, {})).enqueued
    await run_burst()

    result = await result_of(pool)
    assert result["users"] == 2 and result["drifted_users"] == 1 and result["outbox_rows"] == 2
    assert result["graph"] == {"missing": 1, "extra": 0, "changed": 0, "pending": 0}
    assert result["vector"] == {"missing": 1, "extra": 0, "changed": 0, "pending": 0}
    assert result["orphan_users"] == {"graph": 0, "vector": 0}
    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]  # the dispatchers it started applied them
    assert await drift_totals(settings, pool, redis_client, ana.user_id) == [0, 0]
    assert await drift_totals(settings, pool, redis_client, bo.user_id) == [0, 0]


async def test_the_nightly_job_removes_what_the_stores_hold_of_users_postgres_no_longer_has(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    ana, bo = await synced(pool, redis_client, run_burst)
    await delete_user_row_only(pool, ana.user_id)  # the stores keep her items (tests/store/orphans.py)
    await enqueue(redis_client, pool, RECONCILE, {"repair": False})
    await run_burst()
    assert (await result_of(pool))["orphan_users"] == {"graph": 1, "vector": 1}
    assert await pool.fetchval("SELECT count(*) FROM runtime.vector_items WHERE user_id = $1", ana.user_id) == 5

    await enqueue(redis_client, pool, RECONCILE, {})
    await run_burst()
    result = await result_of(pool)
    assert result["users"] == 1 and result["orphan_users"] == {"graph": 1, "vector": 1}
    for table in ("graph_nodes", "vector_items"):
        assert await pool.fetchval(f"SELECT count(*) FROM runtime.{table} WHERE user_id = $1", ana.user_id) == 0
    assert await drift_totals(settings, pool, redis_client, bo.user_id) == [0, 0]


async def test_without_repair_it_reports_and_records_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    ana, _ = await synced(pool, redis_client, run_burst)
    await inject_drift(pool, ana)
    await enqueue(redis_client, pool, RECONCILE, {"user_id": ana.user_id, "repair": False})
    await run_burst()
    result = await result_of(pool)
    assert result["users"] == 1 and result["drifted_users"] == 1 and result["outbox_rows"] == 0
    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]
    assert await drift_totals(settings, pool, redis_client, ana.user_id) == [1, 1]


def test_it_is_in_the_catalog_and_runs_nightly() -> None:
    assert JOBS.get("reconcile") is RECONCILE
    assert RECONCILE.cron is not None and parse_cron(RECONCILE.cron) is not None
    minute, hour, *every_day = RECONCILE.cron.split()
    assert minute.isdigit() and hour.isdigit() and every_day == ["*", "*", "*"]
