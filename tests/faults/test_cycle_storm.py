"""SIGKILL storm over users' growth cycles (issue 18): batch workers killed at random while they run the cycle chain
(insight → proactive_prompts → cycle_report → projection) for a set of due users, a few of whom get an unusable
prompts answer every time. Every user's cycle must advance; each step that succeeded must have written exactly once
(one summary, one report, one prompt set, one projection), a step killed on every try is left to the dead policy
and nothing else, and the derived stores must match Postgres (reconcile drift 0)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer, load_all_sample_answers, load_sample_answers
from core.cycle import Cycle
from core.insight import summary_artifact_id
from core.vocabulary import NodeLabel
from jobs.cycle import STEPS
from jobs.cycle_dispatch import CYCLE_DISPATCH
from jobs.runtime.enqueue import enqueue
from jobs.sync import SYNC_STORES
from settings import Settings
from store import ledger, outbox
from store.cycle_report_writes import report_id
from store.cycles import read_cycle
from store.proactive_prompts_writes import cycle_run_key
from store.reconcile import graph_drift, vector_drift
from tests.faults.conftest import STALL_S, Fleet, worker_group
from tests.jobs.conftest import wait_for_workers, wait_progressing
from tests.jobs.cycle_seed import seed_user
from tests.store.derived_memory import open_stores

USERS = 12
HOSTILE = 2
"""Users whose prompts answer names a memory it was not shown, every time: their prompts step dies for ever."""
WORKERS = 3
CONCURRENCY = 2
LLM_THINK_S = 0.3
MAX_KILLS = 12
STORM_S = 40.0
KILL_EVERY_S = (0.75, 1.5)
DISPATCH_EVERY_S = 5.0
"""The test's stand-in for the hourly cron: a dispatch killed mid-run (max_tries 1) is simply the next slot's job."""

SAMPLE_PROMPTS = load_sample_answers("proactive_prompts")[0].answer["prompts"]
BAD_PROMPTS = copy.deepcopy({"prompts": SAMPLE_PROMPTS})
BAD_PROMPTS["prompts"][0]["sources"] = ["m999"]


def thinking_llm() -> ScriptedLLMServer:
    """Every prompt's sample answer after LLM_THINK_S (so kills land mid-call), the hostile one for marked users."""
    hostile = KeyedAnswer("HOSTILE-PROMPTS", BAD_PROMPTS, prompt="proactive_prompts")
    answers = [hostile, *load_all_sample_answers()]
    return ScriptedLLMServer(keyed_answers=[dataclasses.replace(a, delay_s=LLM_THINK_S) for a in answers])


async def due_cycles(pool: asyncpg.Pool) -> tuple[list[Cycle], set[str]]:
    cycles, hostile = [], set()
    for n in range(USERS):
        user = await seed_user(pool, cycle_age=timedelta(days=8))
        if n < HOSTILE:
            hostile.add(user.user_id)
            await pool.execute(
                "UPDATE memory_units SET content = content || ' (HOSTILE-PROMPTS)' WHERE user_id = $1", user.user_id
            )
        seeded = [
            outbox.Change(NodeLabel.USER, user.user_id),
            *outbox.changes(NodeLabel.MEMORY_UNIT, user.memory_ids),
            *outbox.changes(NodeLabel.CONCEPT, user.concept_ids),
        ]
        await outbox.record_changes(pool, user.user_id, seeded)  # the seed wrote SQL: the stores learn of it here
        cycles.append(Cycle.of(user.user_id, user.cycle_start))
    return cycles, hostile


class HourlyDispatch:
    """Enqueues cycle_dispatch every DISPATCH_EVERY_S (a no-op while one is queued or running), as the cron does
    every hour, while the test watches progress."""

    def __init__(self, redis: aioredis.Redis, pool: asyncpg.Pool) -> None:
        self.redis, self.pool, self.last = redis, pool, -DISPATCH_EVERY_S

    async def tick(self, measure: Callable[[], Awaitable[int]]) -> int:
        if time.monotonic() - self.last >= DISPATCH_EVERY_S:
            await enqueue(self.redis, self.pool, CYCLE_DISPATCH, {})
            self.last = time.monotonic()
        return await measure()


async def finished_steps(pool: asyncpg.Pool, cycles: list[Cycle]) -> int:
    runs = await ledger.latest_runs(pool, [c.job_id(step) for c in cycles for step in STEPS])
    return sum(run.state in ledger.FINAL_STATES for run in runs.values())


async def unfinished(pool: asyncpg.Pool, cycles: list[Cycle]) -> list[str]:
    job_ids = [c.job_id(step) for c in cycles for step in STEPS]
    runs = await ledger.latest_runs(pool, job_ids)
    return [
        f"{job_id}: {runs[job_id].state if job_id in runs else 'no run'}"
        for job_id in job_ids
        if job_id not in runs or runs[job_id].state not in ledger.FINAL_STATES
    ]


async def backlog_rows(pool: asyncpg.Pool) -> int:
    return sum(b.rows for b in await outbox.backlog(pool))


async def test_a_sigkill_storm_over_cycles_writes_each_step_once_and_every_cycle_advances(
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    settings: Settings,
    tmp_path: Path,
) -> None:
    cycles, hostile = await due_cycles(pool)
    with thinking_llm() as llm:
        env = {
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "test-key",
            "ORRERY_LLM_TIMEOUT_S": "5",
            "ORRERY_LLM_MAX_RETRIES": "0",
            "ORRERY_CRON": json.dumps({"sweep_timeouts": "off", "cycle_dispatch": "off"}),
        }
        group = worker_group(database_url, redis_url, tmp_path, env)
        try:
            fleet = Fleet(group, WORKERS, "--queue", "batch", "--concurrency", str(CONCURRENCY))
            await wait_for_workers(redis_client, WORKERS, queue="batch")
            clock = HourlyDispatch(redis_client, pool)
            everything = len(cycles) * len(STEPS)

            rng = random.Random(20261207)
            storm_end = time.monotonic() + STORM_S
            while fleet.kills < MAX_KILLS and time.monotonic() < storm_end:
                await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
                if await clock.tick(lambda: finished_steps(pool, cycles)) == everything:
                    break
                fleet.kill_random(rng)
            try:
                await wait_progressing(
                    lambda: clock.tick(lambda: finished_steps(pool, cycles)),
                    lambda n: n == everything,
                    stall_s=STALL_S,
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; unfinished: {await unfinished(pool, cycles)}") from None

            # the next hour: the dispatcher revives what the storm killed for good (projections), closes nothing twice
            await enqueue(redis_client, pool, CYCLE_DISPATCH, {})
            await wait_progressing(lambda: _settled(pool, cycles), lambda settled: settled, stall_s=STALL_S)
            for store in outbox.STORES:
                await enqueue(redis_client, pool, SYNC_STORES, {"store": store})
            await wait_progressing(lambda: backlog_rows(pool), lambda rows: rows == 0, stall_s=STALL_S)
            assert not fleet.dead(), fleet.dead()
        finally:
            group.stop_all()

    runs = await ledger.latest_runs(pool, [c.job_id(step) for c in cycles for step in STEPS])
    problems: list[str] = []
    abandoned = 0
    for cycle in cycles:
        states = {step: runs[cycle.job_id(step)] for step in STEPS}
        for step, run in states.items():
            hostile_death = (
                cycle.user_id in hostile and step == "proactive_prompts" and run.error_class == "PermanentError"
            )
            if run.state == "dead" and run.error_class == "Abandoned":
                abandoned += 1
            elif run.state != "succeeded" and not hostile_death:
                problems.append(f"{cycle.job_id(step)}: {run.state} {run.error_class} {run.error}")
        if cycle.user_id in hostile and states["proactive_prompts"].state != "dead":
            problems.append(f"{cycle.user_id}: the hostile prompts answer did not kill its step")
        problems += await _written_once(pool, cycle, {step: run.state for step, run in states.items()})
        state = await read_cycle(pool, cycle.user_id)
        if state is None or state.cycle.start <= cycle.start:
            problems.append(f"{cycle.user_id}: still on cycle {cycle.stamp}")
    async with open_stores(settings, pool, redis_client) as session:
        graph, vector = await session.graph(), await session.vector()
        for cycle in cycles:
            drift = (await graph_drift(pool, graph, cycle.user_id)).total
            drift += (await vector_drift(pool, vector, cycle.user_id, vector.model_version)).total
            if drift:
                problems.append(f"{cycle.user_id}: reconcile finds {drift} drifted entities")
    assert not problems, f"{len(problems)} problems after {fleet.kills} kills:\n" + "\n".join(problems[:20])
    assert fleet.kills >= 5, f"only {fleet.kills} kills: the storm ended before it began"
    # a call each for insight, prompts and report, two (answer, repair) for a hostile prompts step; a kill can waste
    # at most the calls in flight on the killed worker, and no dead step is paid for twice
    clean = 3 * USERS + HOSTILE
    assert len(llm.chat_requests) <= clean + CONCURRENCY * fleet.kills, (len(llm.chat_requests), fleet.kills)
    print(
        f"FAULTS cycle-storm: users={USERS} hostile={HOSTILE} kills={fleet.kills} abandoned_steps={abandoned} "
        f"llm_calls={len(llm.chat_requests)} drift=0"
    )


async def _settled(pool: asyncpg.Pool, cycles: list[Cycle]) -> bool:
    """The last dispatch has run and no step of these cycles is queued or running."""
    dispatched = await ledger.latest_run(pool, CYCLE_DISPATCH.name)
    if dispatched is None or dispatched.state not in ledger.FINAL_STATES:
        return False
    runs = await ledger.latest_runs(pool, [c.job_id(step) for c in cycles for step in STEPS])
    return all(run.state in ledger.FINAL_STATES for run in runs.values())


async def _written_once(pool: asyncpg.Pool, cycle: Cycle, states: dict[str, str]) -> list[str]:
    """What each step wrote for the cycle: exactly once when it succeeded, nothing when it died."""
    user_id = cycle.user_id
    counts = {
        "insight": await pool.fetchval(
            "SELECT count(*) FROM derived_artifacts WHERE user_id = $1 AND artifact_type = 'insight_summary'", user_id
        ),
        "proactive_prompts": await pool.fetchval(
            "SELECT count(*) FROM proactive_prompts WHERE user_id = $1 AND metadata->>'run_key' = $2",
            user_id,
            cycle_run_key(cycle),
        ),
        "cycle_report": await pool.fetchval(
            "SELECT count(*) FROM derived_artifacts WHERE user_id = $1 AND artifact_type = 'cycle_report'", user_id
        ),
    }
    once = {"insight": 1, "proactive_prompts": len(SAMPLE_PROMPTS), "cycle_report": 1}
    problems = [
        f"{user_id} {step}: {counts[step]} rows, expected {once[step] if states[step] == 'succeeded' else 0}"
        for step in once
        if counts[step] != (once[step] if states[step] == "succeeded" else 0)
    ]
    # the projection is also refreshed after the insight (debounced, issue 19): one row per distinct input, never
    # the same input laid out twice however often a killed run was retried
    layouts, inputs = await pool.fetchrow(
        "SELECT count(*), count(DISTINCT projection_data->>'input_digest') FROM user_graph_projections "
        "WHERE user_id = $1",
        user_id,
    )
    if layouts != inputs or (states["projection"] == "succeeded" and not layouts):
        problems.append(f"{user_id} projection: {layouts} rows for {inputs} distinct inputs")
    if states["insight"] == "succeeded" and not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM derived_artifacts WHERE artifact_id = $1)", summary_artifact_id(cycle)
    ):
        problems.append(f"{user_id}: the summary is not the cycle's own")
    if states["cycle_report"] == "succeeded" and not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM derived_artifacts WHERE artifact_id = $1)", report_id(cycle)
    ):
        problems.append(f"{user_id}: the report is not the cycle's own")
    return problems
