"""A poisoned conversation with the timeout sweep firing every second: its worker is killed on every try (the LLM
answers too slowly to finish first). The job must make at most max_tries LLM calls, become one dead letter, mark the
conversation `failed`, and never be started again by the sweep."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from jobs.ingestion import INGEST
from store import ledger
from store.repos import conversations
from tests.faults.conftest import SAMPLE, Fleet, enqueue_ingestions, llm_env, seed_backlog, worker_group
from tests.jobs.conftest import wait_for_workers

SWEEP_EVERY_SECOND = json.dumps({"sweep_timeouts": "* * * * * *"})
AFTERWARDS_S = 4.0
"""How long the sweep keeps firing after the dead letter, to show it starts nothing more."""
STALL_S = 120.0
"""How long the next step may take before the test calls it stuck: a killed worker's replacement loads and warms
the local model before it claims (15 s and more on a loaded 2-core machine), so this bounds a stall, not speed."""


async def _llm_calls(server: ScriptedLLMServer, count: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while len(server.chat_requests) < count:
        if time.monotonic() > end:
            raise AssertionError(f"LLM call {count} did not arrive in {timeout} s ({len(server.chat_requests)} so far)")
        await asyncio.sleep(0.02)


async def test_a_job_killed_on_every_try_is_dead_after_max_tries_and_the_sweep_leaves_it(
    database_url: str, redis_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    with ScriptedLLMServer() as llm:
        llm.enqueue(*[ScriptedReply.json(SAMPLE.answer, delay_s=60)] * 20)
        env = llm_env(llm, ORRERY_CRON=SWEEP_EVERY_SECOND, ORRERY_LLM_TIMEOUT_S="120")
        group = worker_group(database_url, redis_url, tmp_path, env)
        try:
            fleet = Fleet(group, 2, "--queue", "interactive", "--concurrency", "2")
            await wait_for_workers(redis_client, 2)
            user_id, conversation_id = (await seed_backlog(pool, 1, 1, "poison"))[0]
            job_id = f"ingest:{conversation_id}"
            await enqueue_ingestions(redis_client, pool, [conversation_id])

            for attempt in range(1, INGEST.max_tries + 1):
                await _llm_calls(llm, attempt, timeout=STALL_S)
                run = await ledger.latest_run(pool, job_id)
                assert run is not None and run.state == "running" and run.worker_id, run
                victim = fleet.by_pid(int(run.worker_id.rsplit(":", 1)[1]))
                assert victim is not None, f"attempt {attempt} runs on {run.worker_id}, not one of the workers"
                fleet.kill(victim)

            end = time.monotonic() + STALL_S
            while not any(r.state == "dead" for r in await ledger.runs_of(pool, job_id)):
                assert time.monotonic() < end, f"no dead letter {STALL_S:g} s after the last try: {fleet.dead()}"
                await asyncio.sleep(0.1)
            await asyncio.sleep(AFTERWARDS_S)

            calls = len(llm.chat_requests)
            assert calls == INGEST.max_tries, f"{calls} LLM calls for a job with max_tries={INGEST.max_tries}"
            runs = await ledger.runs_of(pool, job_id)
            assert [r.state for r in runs] == ["dead"], [(r.state, r.error_class, r.error) for r in runs]
            conversation = await conversations.get_conversation(pool, user_id, conversation_id)
            assert conversation is not None and conversation.status == "failed", conversation
            assert not fleet.dead(), fleet.dead()
            print(f"FAULTS poisoned: kills={fleet.kills} llm_calls={calls} dead_letters=1 sweeps_after={AFTERWARDS_S}s")
        finally:
            group.stop_all()
