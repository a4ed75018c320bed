"""A derived store in trouble is visible while the trouble lasts (issue 18, defect 8: `sync status` said "0 failing,
last error -" through a 105 s embedder outage, because failures were recorded only once a whole batch ended), and a
store that answers again is noticed by the dispatcher's own tries, not waited out. Through a real worker, the
vector store's embeddings endpoint failing over real HTTP."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH
from jobs.runtime.metrics import BacklogCollector
from jobs.runtime.worker import WorkerOptions, run_workers
from jobs.sync import SYNC_STORES
from settings import Settings
from store import outbox
from tests.cli.runner import run_cli
from tests.embeddings_server import EmbeddingsServer
from tests.jobs.conftest import cli_env, wait_until
from tests.jobs.testjobs import TEST_JOBS
from tests.store.derived_memory import remember

importlib.import_module("agents.embeddings")
"""Imported with the test, not first inside the job: a first import of the openai client holds the event loop for
seconds on a loaded machine."""


@pytest.fixture
def endpoint() -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer(dimension=16) as server:
        yield server


async def vector_backlog(pool: asyncpg.Pool) -> outbox.Backlog:
    return next(b for b in await outbox.backlog(pool) if b.store == "vector")


async def test_an_embedder_outage_shows_while_it_lasts_and_the_store_is_tried_again_by_itself(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    settings: Settings,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    endpoint: EmbeddingsServer,
) -> None:
    """The endpoint answers the first request 503 and then stops answering (held until released). Before the fix the
    dispatcher went on to the next user, whose request hung, so the batch never ended and nothing was recorded:
    status showed nothing wrong for as long as the outage lasted. Now the first failure marks the store failing at
    once, every row waits for the store's next try, and no second request is made until then."""
    embedding = {"embeddings_base_url": endpoint.base_url, "embeddings_model": "embed-small"}
    settings = settings.model_copy(
        update={**embedding, "embeddings_dimension": 16, "llm_max_retries": 0, "job_lease_s": 15}  # no takeovers
    )
    users = [await remember(pool, name) for name in ("Ana", "Bo", "Cy")]
    pending = (await vector_backlog(pool)).rows
    assert pending == 7 * len(users)
    endpoint.down, endpoint.hold_after = True, 1
    await enqueue(redis_client, pool, SYNC_STORES, {"store": "vector"})
    worker = asyncio.create_task(
        run_workers(settings, database_url, redis_url, WorkerOptions((BATCH,), 4, burst=True), TEST_JOBS)
    )

    async def failing() -> outbox.Backlog | None:
        found = await vector_backlog(pool)
        return found if found.store_failing else None

    during = await wait_until(failing, timeout=60)
    assert not worker.done()  # the worker is still at it: this is the outage as it happens
    assert during.rows == pending and during.failing >= 1 and during.store_failures >= 1
    assert "503" in (during.last_error or "") or "server_error" in (during.last_error or ""), during.last_error
    assert len(endpoint.requests) <= 2  # the failed one, and at most the store's next try (held)

    env = cli_env(database_url, redis_url, tmp_path, ORRERY_EMBEDDINGS_BASE_URL=endpoint.base_url)
    status = run_cli("sync", "status", "--json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr  # not past the lag alert: failing, not lagging
    stores = {s["store"]: s for s in json.loads(status.stdout)["stores"]}
    assert stores["vector"]["store_failing"] and stores["vector"]["failing_for_s"] >= 0
    assert stores["vector"]["last_error"] and not stores["graph"]["store_failing"]
    table = run_cli("sync", "status", env=env).stdout
    assert "FAILING for" in table and "tries" in table, table

    collector = BacklogCollector(database_url, redis_url, (BATCH,), cache_s=0)
    samples = {
        (sample.name, sample.labels.get("store")): sample.value
        for family in await asyncio.to_thread(collector.collect)
        for sample in family.samples
    }
    assert ("orrery_sync_store_failing_seconds", "vector") in samples
    assert samples[("orrery_sync_store_failing_seconds", "graph")] == 0

    endpoint.down = False
    endpoint.released.set()  # the endpoint answers again; nobody nudges the dispatcher

    async def recovered() -> bool:
        found = await vector_backlog(pool)
        return found.rows == 0 and not found.store_failing

    await wait_until(recovered, timeout=60)
    await asyncio.wait_for(worker, 60)
    stored = await pool.fetchval(
        "SELECT count(*) FROM runtime.vector_items WHERE user_id = ANY($1::text[])", [u.user_id for u in users]
    )
    assert stored == 5 * len(users)  # 2 memory units, 2 concepts, the artifact (user and community: graph only)
    state = await outbox.store_state(pool, "vector")
    assert state.last_ok_at is not None and state.failing_since is None and state.failures == 0
