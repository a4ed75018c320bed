"""The cycle as one workflow (jobs/cycle.py, jobs/cycle_dispatch.py) through a real in-process worker: its plan, one
identity per step and cycle however it is started (issue 18 defect 2), the dispatcher, the dead policy that keeps a
user's cycles coming (defect 1), and the bounded revival of a dead projection (defect 3)."""

from __future__ import annotations

import json
import pickle
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from agents.scripted_llm import load_all_sample_answers
from core.cycle import Cycle
from jobs.catalog import JOBS
from jobs.cycle import STEPS, CycleArgs, closing_step_died, next_step
from jobs.cycle_dispatch import CYCLE_DISPATCH, CycleDispatchArgs, dispatch_cycles
from jobs.insight import INSIGHT
from jobs.projection import PROJECTION
from jobs.runtime.attempt import run_attempt
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import BATCH, job_key, queue_key
from jobs.runtime.resources import WorkerResources
from store import ledger
from store.cycle_report_writes import report_id
from store.cycles import read_cycle
from store.ledger import RunState
from store.llm_calls import list_llm_calls
from store.repos._base import to_db
from tests.jobs.conftest import BurstRunner
from tests.jobs.cycle_seed import now_s, seed_user
from tests.jobs.test_projection_job import sync_vectors
from tests.store import testrows

DAY = timedelta(days=1)


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers())


def job_context(resources: WorkerResources, job_id: str, job_name: str) -> JobContext:
    return JobContext(
        settings=resources.settings,
        pool=resources.pool,
        redis=resources.redis,
        job_id=job_id,
        job_name=job_name,
        attempt=1,
        log=structlog.get_logger("test"),
        resources=resources,
        spec=CYCLE_DISPATCH,
    )


async def dispatch(resources: WorkerResources) -> dict[str, Any]:
    return dict(await dispatch_cycles(job_context(resources, "cycle_dispatch", "cycle_dispatch"), CycleDispatchArgs()))


async def chain_states(pool: asyncpg.Pool, cycle: Cycle) -> dict[str, str]:
    states = await ledger.latest_states(pool, [cycle.job_id(step) for step in STEPS])
    return {step: states[cycle.job_id(step)] for step in STEPS if cycle.job_id(step) in states}


async def insight_calls(pool: asyncpg.Pool, user_id: str) -> int:
    return len([c for c in await list_llm_calls(pool, user_id) if c.call.agent == "insight"])


def test_the_plan_runs_the_first_step_not_done_and_closes_a_cycle_whose_report_died() -> None:
    assert next_step({}) == "insight"
    assert next_step({"insight": "succeeded", "proactive_prompts": "running"}) == "proactive_prompts"
    died: dict[str, RunState] = {"insight": "succeeded", "proactive_prompts": "dead"}
    assert next_step(died) == "cycle_report"  # the dispatcher and the dead hook go on without it
    assert next_step(died, rerun_dead=STEPS) == "proactive_prompts"  # an operator's resume runs what died
    assert next_step(died, after="proactive_prompts") == "cycle_report"
    assert next_step({step: "succeeded" for step in STEPS}) is None
    later_dead: dict[str, RunState] = {"cycle_report": "dead", "projection": "succeeded"}
    assert next_step(later_dead, after="proactive_prompts") is None  # a duplicate delivery pays for nothing again
    assert next_step(later_dead, after="proactive_prompts", rerun_dead={"cycle_report"}) == "cycle_report"
    assert closing_step_died({"cycle_report": "dead"}) and not closing_step_died({"proactive_prompts": "dead"})


def test_every_step_is_declared_with_the_chains_identity_and_dead_policy() -> None:
    """A step is a JobSpec made by chain_step, so none can lack the chain's identity, advance or dead hook; the
    catalog pickles (`worker --processes` hands it to each child)."""
    copied = pickle.loads(pickle.dumps(JOBS))
    for step in STEPS:
        spec = copied.get(step)
        assert spec.identity is not None and spec.identity.pattern == f"{step}:{{user_id}}:{{cycle}}", step
        assert spec.dedupe_key is None and spec.on_dead is not None and issubclass(spec.args_model, CycleArgs)


async def test_a_manual_insight_and_the_dispatched_one_share_one_id_and_one_llm_call(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources, run_burst: BurstRunner
) -> None:
    """Issue 18 defect 2: `trigger insight --arg user_id=U` was `insight:U`, the dispatcher's `insight:U:{cycle}`;
    both ran and both paid the model. Now every way in names the cycle, and a record under another id hands over."""
    user = await seed_user(pool, cycle_age=8 * DAY)
    cycle = Cycle.of(user.user_id, user.cycle_start)

    assert await dispatch(resources) == {"due": 1, "enqueued": 1, "closed": 0, "revived": 0, "refreshes": 0}
    by_hand = await enqueue(redis_client, pool, INSIGHT, {"user_id": user.user_id})
    assert (by_hand.job_id, by_hand.enqueued) == (cycle.job_id("insight"), False)
    stray = f"insight:{user.user_id}"  # what a producer following the old dedupe key still writes
    record = {"f": "insight", "k": {"user_id": user.user_id}, "et": int(time.time() * 1000)}
    await redis_client.set(job_key(stray), json.dumps(record), px=60_000)
    await redis_client.zadd(queue_key(BATCH), {stray: time.time() * 1000})

    await run_burst()

    handed = await ledger.latest_run(pool, stray)
    assert handed is not None and handed.state == "succeeded" and handed.result is not None
    assert (handed.result["outcome"], handed.result["job_id"]) == ("handed_over", cycle.job_id("insight"))
    assert await chain_states(pool, cycle) == {step: "succeeded" for step in STEPS}
    assert len(await ledger.runs_of(pool, cycle.job_id("insight"))) == 1
    assert await insight_calls(pool, user.user_id) == 1
    state = await read_cycle(pool, user.user_id)
    assert state is not None and state.cycle.start > cycle.start  # closed: the next cycle runs


async def test_a_stuck_cycle_moves_on_when_insight_is_triggered_by_hand(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """Issue 18 defect 1, the documented manual route: a cycle left as the old code left it (insight succeeded, its
    prompts dead, nothing after) used to answer `already_written` and change nothing. Now the chain goes on."""
    user = await seed_user(pool, cycle_age=8 * DAY)
    cycle = Cycle.of(user.user_id, user.cycle_start)
    await enqueue(redis_client, pool, INSIGHT, {"user_id": user.user_id})
    await run_burst(timeout=60)  # the whole chain once, to learn what it writes
    await pool.execute(  # back to the stuck state: the report and the reset undone, the prompts dead
        "UPDATE users SET last_cycle_started_at = $2 WHERE user_id = $1", user.user_id, to_db(cycle.start)
    )
    await pool.execute("DELETE FROM cards WHERE source_entity_id = $1", report_id(cycle))
    await pool.execute("DELETE FROM derived_artifacts WHERE artifact_id = $1", report_id(cycle))
    await pool.execute(
        "DELETE FROM runtime.job_runs WHERE job_id = ANY($1::text[])",
        [cycle.job_id(s) for s in ("cycle_report", "projection")],
    )
    await pool.execute(
        "UPDATE runtime.job_runs SET state = 'dead', error_class = 'PermanentError' WHERE job_id = $1",
        cycle.job_id("proactive_prompts"),
    )

    again = await enqueue(redis_client, pool, INSIGHT, {"user_id": user.user_id})
    assert again.job_id == cycle.job_id("insight") and again.enqueued
    await run_burst(timeout=60)

    rerun = await ledger.latest_run(pool, again.job_id)
    assert rerun is not None and rerun.result is not None and rerun.result["outcome"] == "already_written"
    assert await chain_states(pool, cycle) == {step: "succeeded" for step in STEPS}
    assert await testrows.get_derived_artifact(pool, user.user_id, report_id(cycle)) is not None
    state = await read_cycle(pool, user.user_id)
    assert state is not None and state.cycle.start > cycle.start


async def test_the_dispatcher_finishes_a_cycle_whose_report_died_without_its_hook(
    pool: asyncpg.Pool, resources: WorkerResources
) -> None:
    """A worker killed between the report's dead letter and its dead hook: the next dispatch closes the cycle and
    runs the projection, so the user's next cycle still comes."""
    user = await seed_user(pool, cycle_age=8 * DAY)
    cycle = Cycle.of(user.user_id, user.cycle_start)
    for step, run_state in (("insight", "succeeded"), ("proactive_prompts", "succeeded"), ("cycle_report", "dead")):
        await pool.execute(
            "INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, max_tries, finished_at) "
            "VALUES ($1, $2, 'batch', $3, $4, 1, now())",
            cycle.job_id(step),
            step,
            {"user_id": user.user_id, "cycle_start": cycle.start.isoformat()},
            run_state,
        )

    assert await dispatch(resources) == {"due": 1, "enqueued": 1, "closed": 1, "revived": 0, "refreshes": 0}
    assert (await chain_states(pool, cycle))["projection"] == "queued"
    state = await read_cycle(pool, user.user_id)
    assert state is not None and state.cycle.start > cycle.start
    assert await dispatch(resources) == {"due": 0, "enqueued": 0, "closed": 0, "revived": 0, "refreshes": 0}


async def test_a_step_redis_lost_is_recovered_once_its_ledger_row_is_quiet(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    """A queued step is left alone while its row is fresh (the dispatcher's plan is a snapshot: enqueueing a step
    that finished meanwhile would start it again); once quiet, it is enqueued again, which re-creates a job Redis
    lost."""
    user = await seed_user(pool, cycle_age=8 * DAY)
    cycle = Cycle.of(user.user_id, user.cycle_start)
    queued = await enqueue(redis_client, pool, INSIGHT, {"user_id": user.user_id})
    await redis_client.delete(job_key(queued.job_id))  # Redis lost it
    await redis_client.zrem(queue_key(BATCH), queued.job_id)

    assert (await dispatch(resources))["enqueued"] == 0
    assert not await redis_client.exists(job_key(queued.job_id))
    await pool.execute(
        "UPDATE runtime.job_runs SET updated_at = now() - interval '11 minutes' WHERE job_id = $1", queued.job_id
    )
    assert (await dispatch(resources))["enqueued"] == 1
    assert await redis_client.exists(job_key(queued.job_id))
    runs = await ledger.runs_of(pool, cycle.job_id("insight"))
    assert [(r.state, r.error_class) for r in runs] == [("queued", None), ("dead", "LostJob")]


async def test_a_dead_projection_is_revived_twice_at_most(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources, run_burst: BurstRunner
) -> None:
    """Issue 18 defect 3: a projection killed by an outage (now of the vector store it reads its vectors from) used
    to stay missing for ever (the cycle had moved on). The dispatcher enqueues it again, and stops after its third
    death: no endless loop."""
    user = await seed_user(pool, cycle_age=3 * DAY)
    await sync_vectors(redis_client, pool, run_burst, user.user_id)  # the vectors the projection lays out
    await pool.execute("DELETE FROM user_graph_projections WHERE user_id = $1", user.user_id)  # the refresh's
    cycle = Cycle.of(user.user_id, user.cycle_start)
    args = {"user_id": user.user_id, "cycle_start": cycle.start.isoformat()}
    down = WorkerResources(
        resources.settings.model_copy(update={"weaviate_url": "http://127.0.0.1:9"}),
        pool,
        redis_client,
        "test-host:2",
        jobs=resources.jobs,
    )

    job_id = cycle.job_id("projection")

    async def dies() -> None:
        """The queued run's last try, with the vector store down; its record leaves Redis as a dead one does."""
        await run_attempt(PROJECTION, down, job_id, PROJECTION.max_tries, args)
        run = await ledger.latest_run(pool, job_id)
        assert run is not None and run.state == "dead", run
        await redis_client.delete(job_key(job_id))
        await redis_client.zrem(queue_key(BATCH), job_id)

    queued = await enqueue(redis_client, pool, PROJECTION, {"user_id": user.user_id})
    assert queued.job_id == job_id
    await dies()
    assert (await dispatch(resources))["revived"] == 1
    await run_burst()
    assert await chain_states(pool, cycle) == {"projection": "succeeded"}
    assert len(await testrows.list_graph_projections(pool, user.user_id)) == 1

    # an outage that outlasts the revivals: enqueued again twice, then left dead
    await pool.execute("DELETE FROM user_graph_projections WHERE user_id = $1", user.user_id)
    await pool.execute("DELETE FROM runtime.job_runs WHERE job_id = $1", job_id)
    await enqueue(redis_client, pool, PROJECTION, {"user_id": user.user_id})
    await dies()
    for _ in range(2):
        assert (await dispatch(resources))["revived"] == 1
        await dies()
    assert (await dispatch(resources))["revived"] == 0
    runs = await ledger.runs_of(pool, job_id)
    assert [r.state for r in runs] == ["dead"] * 3
    assert await testrows.list_graph_projections(pool, user.user_id) == []


async def test_a_revived_projection_is_skipped_once_a_later_one_succeeded(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=3 * DAY)
    old = Cycle.of(user.user_id, now_s() - 10 * DAY)
    await pool.execute(
        "INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, max_tries, finished_at) "
        "VALUES ($1, 'projection', 'batch', $2, 'dead', 3, now())",
        old.job_id("projection"),
        {"user_id": user.user_id, "cycle_start": old.start.isoformat()},
    )
    await enqueue(redis_client, pool, PROJECTION, {"user_id": user.user_id})  # by hand, the current cycle
    await run_burst()

    assert (await dispatch(resources))["revived"] == 0
    left = await ledger.latest_run(pool, old.job_id("projection"))
    assert left is not None and left.state == "dead"
