"""The projection through a real worker: a user's nodes in 3D with their edges, laid out from the vectors the vector
store holds (never embedded again); the same input writes one row; new material adds a newer projection in which
unchanged nodes stay close to where they were. The refresh: the vector dispatcher requests it after storing a
user's vectors, a burst of syncs makes one refresh, a node whose vector is not stored yet waits for the next one, and
a refresh that dies is enqueued again by the hourly dispatcher, a bounded number of times."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from core.errors import PermanentError
from jobs.cycle_dispatch import CYCLE_DISPATCH
from jobs.projection import PROJECTION, PROJECTION_REFRESH, REFRESH_DEATHS, RefreshArgs
from jobs.runtime import queue as redis_queue
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.sync import SYNC_STORES
from store import ledger, outbox, projection_refresh
from store.repos import graph_projections
from store.repos._base import to_db
from store.sync import user_refs
from tests.jobs.conftest import BurstRunner
from tests.jobs.cycle_seed import now_s, seed_user
from tests.jobs.testjobs import TEST_JOBS, replacing
from tests.store import testrows


async def project(redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, user_id: str) -> dict[str, Any]:
    queued = await enqueue(redis, pool, PROJECTION, {"user_id": user_id})  # by hand: the current cycle
    await run_burst()
    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    return dict(run.result)


async def sync_vectors(redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, user_id: str) -> None:
    """Every entity of the user through the vector dispatcher, as the writers' outbox rows would send them."""
    refs = await user_refs(pool, user_id)
    await outbox.record_changes(pool, user_id, [outbox.Change(r.label, r.entity_id) for r in refs], stores=["vector"])
    await enqueue(redis, pool, SYNC_STORES, {"store": "vector"})
    await run_burst()


async def add_memory(pool: asyncpg.Pool, user_id: str, title: str) -> str:
    muid = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
        "importance_score) VALUES ($1, $2, $3, $4, $5, $5, $5, 5)",
        muid,
        user_id,
        title,
        f"Maya went for a {title.lower()} in the lake before work.",
        to_db(now_s()),
    )
    return muid


async def refresh_runs(pool: asyncpg.Pool, user_id: str) -> list[ledger.JobRun]:
    return await ledger.runs_of(pool, f"projection_refresh:{user_id}")


def points(data: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    return {node["id"]: (node["x"], node["y"], node["z"]) for node in data["nodes"]}


async def test_projection_is_written_once_per_input_and_unchanged_nodes_stay_put(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=8, concepts=3, community=True)
    assert (await project(redis_client, pool, run_burst, user.user_id))["outcome"] == "waiting_for_vectors"
    assert await testrows.list_graph_projections(pool, user.user_id) == []

    await sync_vectors(redis_client, pool, run_burst, user.user_id)  # the dispatcher requests the refresh
    [refresh] = await refresh_runs(pool, user.user_id)
    assert refresh.state == "succeeded" and refresh.result is not None
    assert (refresh.result["outcome"], refresh.result["nodes"], refresh.result["waiting"]) == ("written", 11, 0)
    [row] = await testrows.list_graph_projections(pool, user.user_id)
    data = row.projection_data
    assert data["method"] == "pca" and data["embedding_model"] == "all-MiniLM-L6-v2"
    kinds = {node["id"]: node["type"] for node in data["nodes"]}
    assert [kinds[m] for m in user.memory_ids] == ["MemoryUnit"] * 8
    assert [kinds[c] for c in user.concept_ids] == ["Concept"] * 3
    assert sorted(kinds.values()).count("Community") == 1
    edges = {(e["source"], e["target"], e["type"]) for e in data["edges"]}
    assert {(m, user.concept_ids[0], "IS_ABOUT") for m in user.memory_ids} <= edges
    assert sum(1 for e in edges if e[2] == "BELONGS_TO_COMMUNITY") == 3
    sizes = {node["id"]: node["size"] for node in data["nodes"]}
    importance = dict(
        await pool.fetch("SELECT muid, importance_score FROM memory_units WHERE user_id = $1", user.user_id)
    )
    assert all(sizes[m] == importance[m] / 10 for m in user.memory_ids)  # a node's size is in [0, 1]

    # the chain's step over the same input: nothing new (the refresh laid out this very input)
    again = await project(redis_client, pool, run_burst, user.user_id)
    assert again["outcome"] == "unchanged" and again["projection_id"] == row.projection_id
    assert [p.projection_id for p in await testrows.list_graph_projections(pool, user.user_id)] == [row.projection_id]

    await add_memory(pool, user.user_id, "Swim")
    await sync_vectors(redis_client, pool, run_burst, user.user_id)
    newest = await graph_projections.latest_graph_projection(pool, user.user_id)
    assert newest is not None and newest.projection_id != row.projection_id
    assert len(newest.projection_data["nodes"]) == 13 and newest.projection_data["aligned_to"] == row.projection_id
    before, after = points(data), points(newest.projection_data)
    moved = [float(np.linalg.norm(np.subtract(after[key], before[key]))) for key in before]
    spread = float(np.mean([np.linalg.norm(point) for point in before.values()]))
    assert float(np.mean(moved)) < 0.25 * spread, (moved, spread)


async def test_a_node_whose_vector_is_not_stored_waits_for_the_next_refresh(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """Never embedded by the projection: a memory unit the dispatcher has not stored yet is left out (counted as
    waiting), and the sync that stores it brings the refresh that places it."""
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=5, concepts=2)
    await sync_vectors(redis_client, pool, run_burst, user.user_id)
    late = await add_memory(pool, user.user_id, "Swim")

    waiting = await project(redis_client, pool, run_burst, user.user_id)
    assert (waiting["outcome"], waiting["nodes"], waiting["waiting"]) == ("unchanged", 7, 1)
    newest = await graph_projections.latest_graph_projection(pool, user.user_id)
    assert newest is not None and late not in points(newest.projection_data)

    await sync_vectors(redis_client, pool, run_burst, user.user_id)
    runs = await refresh_runs(pool, user.user_id)
    assert [run.state for run in runs] == ["succeeded", "succeeded"]
    assert runs[0].result is not None and (runs[0].result["outcome"], runs[0].result["nodes"]) == ("written", 8)
    newest = await graph_projections.latest_graph_projection(pool, user.user_id)
    assert newest is not None and late in points(newest.projection_data)
    state = await projection_refresh.get_state(pool, user.user_id)
    assert state is not None and state.refreshed_at is not None and state.refreshed_at >= state.requested_at


async def test_a_burst_of_syncs_makes_one_refresh(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """Three ingestions' worth of syncs within the debounce: the refresh is enqueued by the first, the others find it
    queued, and its one run places everything the three stored."""
    run_burst.settings = run_burst.settings.model_copy(update={"projection_refresh_delay_s": 3600})
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=4, concepts=2)
    added = []
    for title in ("Swim", "Hike", "Climb"):
        added.append(await add_memory(pool, user.user_id, title))
        await sync_vectors(redis_client, pool, run_burst, user.user_id)  # the burst leaves the refresh queued
    assert [run.state for run in await refresh_runs(pool, user.user_id)] == ["queued"]
    job_id = f"projection_refresh:{user.user_id}"
    assert (await redis_queue.presence(redis_client, job_id, PROJECTION_REFRESH.queue)).queued
    assert await testrows.list_graph_projections(pool, user.user_id) == []

    assert await redis_queue.make_due(redis_client, PROJECTION_REFRESH.queue, [job_id], 0) == 1
    await run_burst()
    [run] = await refresh_runs(pool, user.user_id)
    assert run.state == "succeeded" and run.result is not None and run.result["nodes"] == 4 + 2 + 3
    [row] = await testrows.list_graph_projections(pool, user.user_id)
    assert set(added) <= set(points(row.projection_data))


async def _always_fails(ctx: JobContext, args: RefreshArgs) -> dict[str, Any]:
    raise PermanentError(f"projection of user {args.user_id}: the vector store refused the read")


async def test_a_refresh_that_dies_is_enqueued_again_a_bounded_number_of_times(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """A dead refresh counts a death on its request; the hourly cycle dispatcher enqueues a request still pending
    while it died fewer than REFRESH_DEATHS times, then leaves it dead (no loop); new material starts again, and once
    the refresh works the request is settled."""
    failing = dataclasses.replace(PROJECTION_REFRESH, handler=_always_fails, max_tries=1)
    run_burst.jobs = replacing(TEST_JOBS, failing)
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=3, concepts=2)
    await sync_vectors(redis_client, pool, run_burst, user.user_id)
    assert [run.state for run in await refresh_runs(pool, user.user_id)] == ["dead"]

    async def dispatch_an_hour_later() -> dict[str, Any]:
        await pool.execute(
            "UPDATE runtime.projection_refresh SET requested_at = requested_at - interval '1 hour' WHERE user_id = $1",
            user.user_id,
        )
        queued = await enqueue(redis_client, pool, CYCLE_DISPATCH, {})
        await run_burst()
        run = await ledger.latest_run(pool, queued.job_id)
        assert run is not None and run.result is not None
        return dict(run.result)

    for deaths in range(1, REFRESH_DEATHS):
        assert (await dispatch_an_hour_later())["refreshes"] == 1
        state = await projection_refresh.get_state(pool, user.user_id)
        assert state is not None and state.deaths == deaths + 1 and "refused the read" in (state.last_error or "")
    assert (await dispatch_an_hour_later())["refreshes"] == 0  # died REFRESH_DEATHS times: left dead
    assert len(await refresh_runs(pool, user.user_id)) == REFRESH_DEATHS

    run_burst.jobs = TEST_JOBS  # the fault is fixed; new material asks again, with a fresh count
    await add_memory(pool, user.user_id, "Swim")
    await sync_vectors(redis_client, pool, run_burst, user.user_id)
    assert (await refresh_runs(pool, user.user_id))[0].state == "succeeded"
    state = await projection_refresh.get_state(pool, user.user_id)
    assert state is not None and state.deaths == 0 and state.refreshed_at is not None
    assert state.refreshed_at >= state.requested_at
    assert (await dispatch_an_hour_later())["refreshes"] == 0  # settled: nothing pending


async def test_a_refresh_for_a_user_forgotten_since_succeeds_with_nothing_to_do(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=1, concepts=1)
    queued = await enqueue(redis_client, pool, PROJECTION_REFRESH, {"user_id": user.user_id})
    await pool.execute("DELETE FROM users WHERE user_id = $1", user.user_id)
    await run_burst()
    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and run.state == "succeeded" and run.result == {"outcome": "no_user"}


async def test_a_request_after_the_refresh_started_is_seen_when_it_ends(pool: asyncpg.Pool) -> None:
    """The row behind the debounce: a refresh settles the request as of its start, and says when a newer request came
    meanwhile (the job then goes round again: a DeferredError to its own id)."""
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=1, concepts=1)
    t0 = datetime.now(UTC)
    await projection_refresh.request(pool, [user.user_id, "no-such-user"], at=t0)
    assert await projection_refresh.refreshed(pool, user.user_id, started=t0 + timedelta(seconds=1)) is False
    await projection_refresh.request(pool, [user.user_id], at=t0 + timedelta(seconds=3))  # while one runs
    assert await projection_refresh.refreshed(pool, user.user_id, started=t0 + timedelta(seconds=2)) is True
    assert await projection_refresh.pending(
        pool, requested_before=t0 + timedelta(hours=1), below_deaths=3, limit=10
    ) == [user.user_id]
    assert await projection_refresh.get_state(pool, "no-such-user") is None
