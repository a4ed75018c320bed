"""Issue 18 defect 1 through a real `run.py worker`: a user whose proactive prompts or cycle report dies (the model
keeps answering something unusable) still gets the rest of the cycle and the next cycle, like a control user.

Before the chain had one dead policy, such a user stayed on their cycle for ever: nothing after the dead step ran,
the cycle was never reset, and the dispatcher skipped them because their insight had finished.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer, load_all_sample_answers, load_sample_answers
from core.cycle import Cycle
from jobs.cycle import STEPS
from jobs.cycle_dispatch import CYCLE_DISPATCH
from jobs.runtime.enqueue import enqueue
from store import ledger
from store.cycle_report_writes import report_id
from store.cycles import read_cycle
from store.repos._base import to_db
from tests.jobs.conftest import WorkerProcesses, cli_env, wait_for_workers, wait_progressing
from tests.jobs.cycle_seed import seed_user
from tests.store import testrows

DAY = timedelta(days=1)

BAD_PROMPTS = copy.deepcopy(load_sample_answers("proactive_prompts")[0].answer)
BAD_PROMPTS["prompts"][0]["sources"] = ["m999"]  # a memory it was not shown: repaired once, then dead
BAD_REPORT = {"title": "", "narrative": "A report without a title."}  # blank title: repaired once, then dead


def llm_server() -> ScriptedLLMServer:
    hostile = [
        KeyedAnswer("HOSTILE-PROMPTS", BAD_PROMPTS, prompt="proactive_prompts"),
        KeyedAnswer("HOSTILE-REPORT", BAD_REPORT, prompt="cycle_report"),
    ]
    return ScriptedLLMServer(keyed_answers=[*hostile, *load_all_sample_answers()])


async def due_user(pool: asyncpg.Pool, marker: str) -> Cycle:
    """A user whose cycle is due, their memory carrying `marker` (which the scripted model answers badly)."""
    user = await seed_user(pool, cycle_age=8 * DAY)
    await pool.execute(
        "UPDATE memory_units SET content = content || $2 WHERE user_id = $1", user.user_id, f" ({marker})"
    )
    return Cycle.of(user.user_id, user.cycle_start)


async def finished_steps(pool: asyncpg.Pool, cycles: list[Cycle]) -> int:
    states = await ledger.latest_states(pool, [c.job_id(step) for c in cycles for step in STEPS])
    return sum(state in ("succeeded", "dead") for state in states.values())


async def run_cycles(pool: asyncpg.Pool, redis: aioredis.Redis, cycles: list[Cycle]) -> dict[str, dict[str, str]]:
    """Dispatch, then wait (on progress) until every step of every cycle has finished; each cycle's states."""
    await enqueue(redis, pool, CYCLE_DISPATCH, {})
    await wait_progressing(
        lambda: finished_steps(pool, cycles),
        lambda done: done == len(cycles) * len(STEPS),
        stall_s=60,
        what="the cycles' chains",
    )
    states = await ledger.latest_states(pool, [c.job_id(step) for c in cycles for step in STEPS])
    return {c.user_id: {step: states[c.job_id(step)] for step in STEPS} for c in cycles}


async def test_a_dead_prompts_or_report_step_does_not_hold_the_users_cycles(
    database_url: str, redis_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    prompts_dies = await due_user(pool, "HOSTILE-PROMPTS")
    report_dies = await due_user(pool, "HOSTILE-REPORT")
    control = await due_user(pool, "a quiet week")
    first = [prompts_dies, report_dies, control]
    with llm_server() as llm:
        env = {
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "test-key",
            "ORRERY_LLM_MAX_RETRIES": "0",
            "ORRERY_CRON": json.dumps({"cycle_dispatch": "off", "sweep_timeouts": "off"}),
        }
        workers = WorkerProcesses(cli_env(database_url, redis_url, tmp_path, **env), tmp_path)
        try:
            workers.start("--queue", "batch", "--concurrency", "4")
            await wait_for_workers(redis_client, 1, queue="batch")
            states = await run_cycles(pool, redis_client, first)

            ok = dict.fromkeys(STEPS, "succeeded")
            assert states[control.user_id] == ok
            assert states[prompts_dies.user_id] == {**ok, "proactive_prompts": "dead"}
            assert states[report_dies.user_id] == {**ok, "cycle_report": "dead"}
            dead = await ledger.latest_run(pool, prompts_dies.job_id("proactive_prompts"))
            assert dead is not None and dead.error_class == "PermanentError" and "m999" in (dead.error or "")
            report = await testrows.get_derived_artifact(pool, report_dies.user_id, report_id(report_dies))
            assert report is None  # closed without its report, which stays a dead letter for `cycle resume`
            assert await testrows.get_derived_artifact(pool, prompts_dies.user_id, report_id(prompts_dies))

            # a week later: every user's next cycle comes, the hostile ones' like the control's
            second = []
            for cycle in first:
                state = await read_cycle(pool, cycle.user_id)
                assert state is not None and state.cycle.start > cycle.start, f"{cycle.user_id} stayed on its cycle"
                await pool.execute(
                    "UPDATE users SET last_cycle_started_at = $2 WHERE user_id = $1",
                    cycle.user_id,
                    to_db(state.cycle.start - 8 * DAY),
                )
                second.append(Cycle.of(cycle.user_id, state.cycle.start - 8 * DAY))
            again = await run_cycles(pool, redis_client, second)
            assert {user: steps["insight"] for user, steps in again.items()} == {c.user_id: "succeeded" for c in first}
            for cycle in second:
                state = await read_cycle(pool, cycle.user_id)
                assert state is not None and state.cycle.start > cycle.start
            assert len(llm.chat_requests) > 0
        finally:
            workers.stop_all()
