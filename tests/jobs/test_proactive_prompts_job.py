"""The proactive_prompts job through a real worker and the scripted LLM answering from agents/samples/: prompts
written once, deduplicated against the pending ones, capped, stale ones expired; the daily schedule's selection."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

import jobs.proactive_prompts
from agents.scripted_llm import ScriptedLLMServer, load_all_sample_answers, load_sample_answers
from jobs.proactive_prompts import PROACTIVE_PROMPTS, PROACTIVE_PROMPTS_DAILY
from jobs.runtime.enqueue import enqueue
from settings import Settings
from store import ledger
from store.llm_calls import list_llm_calls
from store.repos import proactive_prompts
from store.repos._base import to_db
from tests.jobs.conftest import BurstRunner
from tests.jobs.cycle_seed import now_s, seed_user
from tests.store import testrows

SAMPLE: list[dict[str, Any]] = load_sample_answers("proactive_prompts")[0].answer["prompts"]
TODAY = date(2026, 11, 20)


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers())


async def daily_run(redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, user_id: str, day: date) -> Any:
    job_id = f"proactive_prompts:{user_id}:daily:{day:%Y%m%d}"
    await enqueue(redis, pool, PROACTIVE_PROMPTS, {"user_id": user_id, "daily": day.isoformat()}, job_id=job_id)
    await run_burst()
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded", run
    return run.result


async def pending_texts(pool: asyncpg.Pool, user_id: str) -> list[str]:
    return [p.prompt_text for p in await proactive_prompts.list_proactive_prompts(pool, user_id, status="pending")]


async def add_pending(pool: asyncpg.Pool, user_id: str, text: str, *, age: timedelta = timedelta(0)) -> str:
    prompt = await testrows.create_proactive_prompt(pool, user_id, prompt_text=text, source_agent="web")
    await pool.execute(
        "UPDATE proactive_prompts SET created_at = $2 WHERE prompt_id = $1", prompt.prompt_id, to_db(now_s() - age)
    )
    return prompt.prompt_id


async def test_a_daily_run_writes_the_prompts_once_and_a_rerun_makes_no_call(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3))
    result = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY)

    assert result == {
        "run_key": "daily:20261120",
        "outcome": "written",
        "written": 2,
        "duplicates": 0,
        "over_cap": 0,
        "expired": 0,
        "llm_calls": 1,
    }
    rows = await proactive_prompts.list_proactive_prompts(pool, user.user_id)
    assert [(p.prompt_text, p.priority, p.status, p.source_agent) for p in rows] == [
        (s["prompt_text"], s["priority"], "pending", "ProactivePromptAgent") for s in SAMPLE
    ]
    metadata = rows[0].metadata or {}
    assert metadata["rationale"] == SAMPLE[0]["rationale"]
    assert metadata["suggested_timing"] == "next_conversation"
    assert metadata["source_memory_unit_ids"] == [user.memory_ids[0]]  # "m1" = the newest memory unit shown
    assert metadata["run_key"] == "daily:20261120"
    calls = await list_llm_calls(pool, user.user_id)
    assert [(c.call.prompt_name, c.call.agent, c.call.outcome.value) for c in calls] == [
        ("proactive_prompts", "proactive_prompts", "ok")
    ]

    rerun = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY)
    assert rerun == {"run_key": "daily:20261120", "outcome": "already_written", "expired": 0, "llm_calls": 0}
    assert [p.prompt_id for p in await proactive_prompts.list_proactive_prompts(pool, user.user_id)] == [
        p.prompt_id for p in rows
    ]
    assert len(await list_llm_calls(pool, user.user_id)) == 1
    assert await ledger.latest_run(pool, f"cycle_report:{user.user_id}:x") is None  # a daily run continues no chain


async def test_a_prompt_repeating_a_pending_one_is_dropped(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3))
    repeated = SAMPLE[0]["prompt_text"].upper().replace("?", " ?!")  # same words, other case and punctuation
    await add_pending(pool, user.user_id, repeated)

    result = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY)

    assert (result["written"], result["duplicates"], result["over_cap"]) == (1, 1, 0)
    assert sorted(await pending_texts(pool, user.user_id)) == sorted([repeated, SAMPLE[1]["prompt_text"]])


async def test_the_cap_keeps_the_highest_priority_prompts_that_fit(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3))
    for n in range(settings.proactive_prompts_max_pending - 1):
        await add_pending(pool, user.user_id, f"Older question number {n}")

    result = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY)

    assert (result["written"], result["duplicates"], result["over_cap"]) == (1, 0, 1)
    texts = await pending_texts(pool, user.user_id)
    assert len(texts) == settings.proactive_prompts_max_pending
    assert SAMPLE[0]["prompt_text"] in texts and SAMPLE[1]["prompt_text"] not in texts  # priority 8 beat 6


async def test_a_full_cap_makes_no_call_and_stale_prompts_expire(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    user = await seed_user(pool, cycle_age=timedelta(days=3))
    ids = [
        await add_pending(pool, user.user_id, f"Question {n}") for n in range(settings.proactive_prompts_max_pending)
    ]

    full = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY)
    assert full == {"run_key": "daily:20261120", "outcome": "cap_reached", "expired": 0, "llm_calls": 0}
    assert await list_llm_calls(pool, user.user_id) == []

    stale = timedelta(days=settings.proactive_prompt_expiry_days + 1)
    for prompt_id in ids[:2]:
        await pool.execute(
            "UPDATE proactive_prompts SET created_at = $2 WHERE prompt_id = $1", prompt_id, to_db(now_s() - stale)
        )
    later = await daily_run(redis_client, pool, run_burst, user.user_id, TODAY + timedelta(days=1))

    assert (later["expired"], later["written"], later["llm_calls"]) == (2, 2, 1)
    expired = await proactive_prompts.list_proactive_prompts(pool, user.user_id, status="expired")
    assert sorted(p.prompt_id for p in expired) == sorted(ids[:2])
    assert len(await pending_texts(pool, user.user_id)) == settings.proactive_prompts_max_pending


async def test_the_daily_schedule_asks_for_users_with_new_memory_whose_cycle_is_not_due(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    length = timedelta(days=settings.cycle_length_days)
    chosen = await seed_user(pool, cycle_age=timedelta(days=3), activity_age=timedelta(hours=2))
    due = await seed_user(pool, cycle_age=length + timedelta(hours=13), activity_age=timedelta(hours=2))
    quiet = await seed_user(pool, cycle_age=timedelta(days=3), activity_age=timedelta(days=2))
    just_started = await seed_user(pool, cycle_age=timedelta(hours=3), activity_age=timedelta(hours=2))

    # the users are in UTC (the default): their morning is the hour of `now`, given as the schedule's clock
    now = datetime.now(UTC)
    run_burst.settings = settings.model_copy(update={"proactive_prompts_local_hour": now.hour})
    queued = await enqueue(redis_client, pool, PROACTIVE_PROMPTS_DAILY, {"at": now.isoformat()})
    await run_burst()

    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and run.state == "succeeded" and run.result == {"users": 1, "enqueued": 1}
    assert len(await pending_texts(pool, chosen.user_id)) == len(SAMPLE)
    for other in (due, quiet, just_started):
        assert await pending_texts(pool, other.user_id) == []
    day = now.date()
    daily = await ledger.latest_run(pool, f"proactive_prompts:{chosen.user_id}:daily:{day:%Y%m%d}")
    assert daily is not None and daily.state == "succeeded"


async def test_prompts_are_grounded_in_memories_older_than_the_recent_ones(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model sees the newest memory units and, besides them, older ones recall finds over the whole history (the
    vector store the ingestions filled) for the open topics and the recent memories, each with why it came back."""
    from tests.jobs.test_insight_job import ingested_sample_user, section

    monkeypatch.setattr(jobs.proactive_prompts, "RECENT_MEMORIES", 3)
    user_id = await ingested_sample_user(pool, redis_client, run_burst)
    rows = await pool.fetch(
        "SELECT title FROM memory_units WHERE user_id = $1 ORDER BY creation_ts DESC, muid", user_id
    )  # the job's order
    newest, older = {r["title"] for r in rows[:3]}, {r["title"] for r in rows[3:]}
    before = len(llm_server.chat_requests)

    result = await daily_run(redis_client, pool, run_burst, user_id, TODAY)

    assert result["outcome"] == "written" and result["written"] == len(SAMPLE)  # the sample answer still applies
    (request,) = [r for r in llm_server.chat_requests[before:] if r.prompt_name == "proactive_prompts"]
    text = request.message_text()
    recent, earlier = section(text, "memories"), section(text, "earlier_memories")
    assert all(title in recent for title in newest)
    shown = {title for title in older if title in earlier}
    assert shown and not {title for title in older if title in recent}  # older memories reach the model as earlier
    assert "recalled: similar to" in earlier and "carried by" in earlier
