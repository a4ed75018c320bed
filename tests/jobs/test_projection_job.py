"""The projection job through a real worker with the real local embedding model: a user's nodes in 3D with their
edges; the same input twice writes one row; new material adds a newer projection in which unchanged nodes stay close
to where they were; vectors the vector store already holds are reused instead of embedded again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from jobs.projection import PROJECTION
from jobs.runtime.enqueue import enqueue
from store import ledger
from store.repos import graph_projections
from store.repos._base import to_db
from tests.jobs.conftest import BurstRunner
from tests.jobs.cycle_seed import now_s, seed_user
from tests.store import testrows


async def project(redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, user_id: str) -> dict[str, Any]:
    queued = await enqueue(redis, pool, PROJECTION, {"user_id": user_id})  # by hand: the current cycle
    await run_burst()
    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    return dict(run.result)


def points(data: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    return {node["id"]: (node["x"], node["y"], node["z"]) for node in data["nodes"]}


async def test_projection_is_written_once_per_input_and_unchanged_nodes_stay_put(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=8, concepts=3, community=True)

    first = await project(redis_client, pool, run_burst, user.user_id)
    assert first["outcome"] == "written" and first["nodes"] == 8 + 3 + 1 and first["embedded"] == 11
    [row] = await testrows.list_graph_projections(pool, user.user_id)
    data = row.projection_data
    assert data["method"] == "pca" and data["embedding_model"] == "all-MiniLM-L6-v2"
    kinds = {node["id"]: node["type"] for node in data["nodes"]}
    assert [kinds[m] for m in user.memory_ids] == ["MemoryUnit"] * 8
    assert [kinds[c] for c in user.concept_ids] == ["Concept"] * 3
    edges = {(e["source"], e["target"], e["type"]) for e in data["edges"]}
    assert {(m, user.concept_ids[0], "HIGHLIGHTS") for m in user.memory_ids} <= edges
    assert sum(1 for e in edges if e[2] == "BELONGS_TO_COMMUNITY") == 3

    again = await project(redis_client, pool, run_burst, user.user_id)
    assert again["outcome"] == "already_written" and again["embedded"] == 0
    assert [p.projection_id for p in await testrows.list_graph_projections(pool, user.user_id)] == [row.projection_id]

    await pool.execute(
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
        "importance_score) VALUES ($1, $2, 'Swim', 'Maya swam 1 km in the lake before work.', $3, $3, $3, 5)",
        str(uuid.uuid4()),
        user.user_id,
        to_db(now_s()),
    )
    grown = await project(redis_client, pool, run_burst, user.user_id)
    assert grown["outcome"] == "written" and grown["nodes"] == 13
    newest = await graph_projections.latest_graph_projection(pool, user.user_id)
    assert newest is not None and newest.projection_id != row.projection_id
    assert newest.projection_data["aligned_to"] == row.projection_id
    before, after = points(data), points(newest.projection_data)
    moved = [float(np.linalg.norm(np.subtract(after[key], before[key]))) for key in before]
    spread = float(np.mean([np.linalg.norm(point) for point in before.values()]))
    assert float(np.mean(moved)) < 0.25 * spread, (moved, spread)


async def test_vectors_already_in_the_vector_store_are_reused(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    from core.vocabulary import NodeLabel
    from jobs.sync import SYNC_STORES
    from store import outbox
    from store.repos.concepts import list_concepts
    from store.repos.memory_units import list_memory_units

    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=4, concepts=2)
    changes = [outbox.Change(NodeLabel.MEMORY_UNIT, m.muid) for m in await list_memory_units(pool, user.user_id)]
    changes += [outbox.Change(NodeLabel.CONCEPT, c.concept_id) for c in await list_concepts(pool, user.user_id)]
    await outbox.record_changes(pool, user.user_id, changes)
    await enqueue(redis_client, pool, SYNC_STORES, {"store": "vector"})
    await run_burst()

    result = await project(redis_client, pool, run_burst, user.user_id)
    assert (result["embedded"], result["reused_vectors"], result["nodes"]) == (0, 6, 6)
