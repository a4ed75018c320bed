"""Issue 18 defect 4 through a real worker: reprocessing a conversation whose memory the cycle's insights cite, then
reconciling, finds no drift. Before, `trigger ingest --arg reprocess=true` re-created the memory units, the foreign
key nulled `derived_artifacts.source_memory_unit_id` of the insights citing them without an outbox row, and
reconcile reported `DerivedArtifact changed`."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.sync import SYNC_STORES
from settings import Settings
from store import ledger, outbox
from store.repos import derived_artifacts
from tests.jobs.conftest import BurstRunner
from tests.jobs.test_insight_job import (  # noqa: F401  (fixtures)
    ingested_sample_user,
    insight_only,
    pytestmark,
    trigger,
)
from tests.jobs.test_reconcile_job import drift_totals


async def sync_everything(pool: asyncpg.Pool, redis: aioredis.Redis, run_burst: BurstRunner) -> None:
    for store in outbox.STORES:
        await enqueue(redis, pool, SYNC_STORES, {"store": store})
    await run_burst()
    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]


async def test_reprocess_then_reconcile_finds_no_drift(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    insight_only: BurstRunner,  # noqa: F811
    settings: Settings,
) -> None:
    user_id = await ingested_sample_user(pool, redis_client, insight_only)
    await trigger(redis_client, pool, user_id)
    await insight_only()
    await sync_everything(pool, redis_client, insight_only)
    assert await drift_totals(settings, pool, redis_client, user_id) == [0, 0]

    cited = {
        a.artifact_id: a.source_memory_unit_id
        for a in await derived_artifacts.list_derived_artifacts(pool, user_id)
        if a.source_memory_unit_id is not None
    }
    assert cited, "the insight cites no memory unit: nothing for a reprocess to disturb"
    source = await pool.fetchval(
        "SELECT source_conversation_id FROM memory_units WHERE muid = $1", next(iter(cited.values()))
    )
    reprocess = await enqueue(redis_client, pool, INGEST, {"conversation_id": source, "reprocess": True})
    await insight_only()
    run = await ledger.latest_run(pool, reprocess.job_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    assert run.result["replaced"]["memory_units"] > 0  # it really re-derived the cited memory

    after = {
        a.artifact_id: a.source_memory_unit_id for a in await derived_artifacts.list_derived_artifacts(pool, user_id)
    }
    assert {k: after[k] for k in cited} == cited  # the same extraction: every citation kept
    await sync_everything(pool, redis_client, insight_only)
    assert await drift_totals(settings, pool, redis_client, user_id) == [0, 0]
