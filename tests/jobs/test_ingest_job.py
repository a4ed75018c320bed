"""The ingest job through a real in-process worker, a real openai client and a scripted OpenAI-compatible server.

Each test scripts the LLM's answers, runs the worker until the queues are empty and then asserts the database:
the rows written (exactly, and once), the conversation's status, the ledger and runtime.llm_calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_all_sample_answers, load_sample_answers
from jobs.ingestion import INGEST, IngestArgs
from jobs.maintenance import SWEEP_TIMEOUTS, end_and_enqueue_ingestion
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import job_key
from jobs.runtime.registry import JobSpec
from jobs.runtime.resources import WorkerResources
from settings import Settings
from store import ledger
from store.llm_calls import list_llm_calls
from store.repos import concepts, conversations, memory_units, users
from store.samples.loader import seed_sample_user
from tests.jobs.conftest import BurstRunner, wait_until
from tests.jobs.testjobs import replacing
from tests.memory_rows import memory_counts

SAMPLE_ANSWER: dict[str, Any] = load_sample_answers()[0].answer  # a valid answer (the 10k run conversation)


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers(), llm_timeout_s=0.5, llm_max_retries=2)


async def one_conversation(pool: asyncpg.Pool, *, status: str = "ended") -> tuple[str, str]:
    user = await users.create_user(pool, str(uuid.uuid4()), email="ana@example.com", name="Ana")
    conversation = await conversations.create_conversation(pool, user.user_id, status=status)
    await conversations.add_message(pool, user.user_id, conversation.id, role="assistant", content="How was the run?")
    await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k, no stops!")
    return user.user_id, conversation.id


async def ingest(redis: aioredis.Redis, pool: asyncpg.Pool, conversation_id: str, **extra: Any) -> str:
    result = await enqueue(redis, pool, INGEST, {"conversation_id": conversation_id, **extra})
    assert result.enqueued
    return result.job_id


EXPECTED_FROM_SAMPLE = {
    "memory_units": len(SAMPLE_ANSWER["memory_units"]),
    "concepts": len(SAMPLE_ANSWER["concepts"]),
    "growth_events": len(SAMPLE_ANSWER["growth_events"]),
    "edges": len(SAMPLE_ANSWER["relationships"]),
}


async def test_valid_answer_writes_memory_once_and_a_rerun_changes_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    assert job_id == f"ingest:{conversation_id}"
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 1
    assert run.result is not None and run.result["outcome"] == "written" and run.result["llm_calls"] == 1
    counts = await memory_counts(pool, user_id)
    assert {k: v for k, v in counts.items() if k != "cards"} == EXPECTED_FROM_SAMPLE
    high = sum(1 for unit in SAMPLE_ANSWER["memory_units"] if unit["importance"] >= 6)
    assert counts["cards"] == len(SAMPLE_ANSWER["concepts"]) + high
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert conversation.title == SAMPLE_ANSWER["title"]
    calls = await list_llm_calls(pool, user_id)
    assert [(c.call.job_id, c.call.outcome.value) for c in calls] == [(job_id, "ok")]

    # a duplicate delivery or a manual re-trigger: nothing new, not even an LLM call
    await ingest(redis_client, pool, conversation_id)
    await run_burst()
    assert await memory_counts(pool, user_id) == counts
    assert len(await list_llm_calls(pool, user_id)) == 1
    rerun = await ledger.latest_run(pool, job_id)
    assert rerun is not None and rerun.result == {"conversation_id": conversation_id, "outcome": "already_processed"}

    # reprocess re-derives: the same rows again (replaced, not added), one more LLM call
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    await ingest(redis_client, pool, conversation_id, reprocess=True)
    await run_burst()
    assert await memory_counts(pool, user_id) == counts
    assert len(await list_llm_calls(pool, user_id)) == 2


async def test_invalid_json_is_repaired_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.text("Sure! Here is the JSON: {title: oops"), ScriptedReply.json(SAMPLE_ANSWER))
    await ingest(redis_client, pool, conversation_id)
    await run_burst()

    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    calls = await list_llm_calls(pool, user_id)
    assert [(c.call.purpose.value, c.call.outcome.value) for c in calls] == [
        ("answer", "invalid_json"),
        ("repair", "ok"),
    ]
    assert (await memory_counts(pool, user_id))["memory_units"] == EXPECTED_FROM_SAMPLE["memory_units"]


async def test_schema_invalid_twice_is_a_dead_letter_and_writes_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    broken = {**SAMPLE_ANSWER, "importance_score": 42}  # outside 1..10
    llm_server.enqueue(ScriptedReply.json(broken), ScriptedReply.json(broken))
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "dead" and run.attempt == 1  # permanent: no retry
    assert run.error_class == "PermanentError" and run.error is not None and "importance_score" in run.error
    assert await memory_counts(pool, user_id) == dict.fromkeys(
        ("memory_units", "concepts", "growth_events", "cards", "edges"), 0
    )
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "failed"
    assert isinstance(conversation.metadata, dict) and "importance_score" in conversation.metadata["failure"]["reason"]
    calls = await list_llm_calls(pool, user_id)
    assert [c.call.outcome.value for c in calls] == ["schema_invalid", "schema_invalid"]
    user = await users.get_user(pool, user_id)
    assert user is not None and user.next_conversation_context_package is None


async def test_rate_limit_then_success(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.error(429, "slow down", retry_after="0"), ScriptedReply.json(SAMPLE_ANSWER))
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded"
    assert [c.call.outcome.value for c in await list_llm_calls(pool, user_id)] == ["rate_limited", "ok"]
    assert (await memory_counts(pool, user_id))["memory_units"] == EXPECTED_FROM_SAMPLE["memory_units"]


async def test_a_timed_out_llm_call_is_retried(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.slow(2.0, ScriptedReply.json(SAMPLE_ANSWER)), ScriptedReply.json(SAMPLE_ANSWER))
    await ingest(redis_client, pool, conversation_id)
    await run_burst()

    assert [c.call.outcome.value for c in await list_llm_calls(pool, user_id)] == ["timeout", "ok"]
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert (await memory_counts(pool, user_id))["memory_units"] == EXPECTED_FROM_SAMPLE["memory_units"]


@pytest.mark.parametrize(
    ("status", "message"),
    [("active", "is 'active', not ended"), (None, "does not exist")],
)
async def test_conversations_that_cannot_be_ingested_are_dead_at_once_with_a_reason(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, status: str | None, message: str
) -> None:
    conversation_id = (await one_conversation(pool, status=status))[1] if status else "no-such-conversation"
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "dead" and run.attempt == 1
    assert run.error is not None and message in run.error


async def test_the_sample_user_end_to_end(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    settings: Settings,
) -> None:
    """Seed → timeout sweep → ingestion of every ended conversation with the shipped sample answers (a conversation
    with a photo and a voice note waits for its media jobs, which read them)."""
    seeded = await seed_sample_user(pool, redis_client, media_dir=settings.resolved_media_root)
    user_id = seeded.user_id
    await enqueue(redis_client, pool, SWEEP_TIMEOUTS, {})
    await run_burst()  # the sweep ends the stale active conversation and enqueues ingestion of every ended one
    await run_burst()  # the ingestion jobs

    by_key = {c.key: c.conversation_id for c in seeded.conversations}
    final = {c.id: c for c in await conversations.list_conversations(pool, user_id)}
    assert {c.status for c in final.values()} == {"processed"}
    quick_importance = final[by_key["quick-check"]].importance_score
    assert quick_importance is not None and quick_importance < 3  # below the threshold: processed, nothing kept
    assert await memory_units.list_memory_units(pool, user_id, source_conversation_id=by_key["quick-check"]) == []
    assert await memory_units.list_memory_units(pool, user_id, source_conversation_id=by_key["sister-visit"])

    calls = await list_llm_calls(pool, user_id)
    # one ingestion call each (none for the empty one), one vision and one transcription call for the attachments
    assert len(calls) == 9 and {c.call.outcome.value for c in calls} == {"ok"}
    assert len(llm_server.chat_requests) == 8 and len(llm_server.transcription_requests) == 1

    # the prompt-injection conversation produced ordinary memory of this user, and nothing about anyone else
    injected = await memory_units.list_memory_units(pool, user_id, source_conversation_id=by_key["stressful-week"])
    assert injected and all(unit.user_id == user_id for unit in injected)
    assert await pool.fetchval("SELECT count(*) FROM users") == 1
    assert await pool.fetchval("SELECT count(DISTINCT user_id) FROM memory_units") == 1

    user = await users.get_user(pool, user_id)
    assert user is not None and isinstance(user.next_conversation_context_package, dict)
    assert user.next_conversation_context_package["proactive_greeting"]
    assert user.concepts_created_in_cycle == len(await concepts.list_concepts(pool, user_id))
    # concepts reused across conversations instead of duplicated: no two share a normalized name and type
    names = [(c.normalized_name, c.type) for c in await concepts.list_concepts(pool, user_id)]
    assert len(names) == len(set(names))
    assert json.dumps(user.next_conversation_context_package)  # stored JSON is plain JSON


def fast_retries(run_burst: BurstRunner, **changes: Any) -> JobSpec:
    """The ingest job as listed, with a backoff of milliseconds so that its five tries fit in a test; `run_burst`
    runs this variant from now on."""
    spec = dataclasses.replace(INGEST, backoff_s=0.01, **changes)
    run_burst.jobs = replacing(run_burst.jobs, spec)
    return spec


async def sweep_often(redis: aioredis.Redis, pool: asyncpg.Pool, run_burst: BurstRunner, times: int = 5) -> int:
    """The timeout sweep run again and again with a worker after each: how many ingestions it enqueued."""
    enqueued = 0
    for _ in range(times):
        swept = await end_and_enqueue_ingestion(pool, redis, timeout_minutes=10, limit=100)
        enqueued += swept.ingest_enqueued
        await run_burst()
    return enqueued


async def dead_runs(pool: asyncpg.Pool, job_id: str) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM runtime.job_runs WHERE job_id = $1 AND state = 'dead'", job_id)
    )


async def test_an_answer_postgres_cannot_store_is_repaired_once_then_failed_and_never_swept_again(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """Issue 10 item 1: a NUL in a concept name passed validation, failed the write on all five tries, and the
    conversation stayed `ended`, so the sweep started five more: 12 LLM calls in 220 s and counting."""
    user_id, conversation_id = await one_conversation(pool)
    concepts = [{**SAMPLE_ANSWER["concepts"][0], "name": "Run\u0000ning"}, *SAMPLE_ANSWER["concepts"][1:]]
    poisoned = {**SAMPLE_ANSWER, "concepts": concepts}
    llm_server.enqueue(*[ScriptedReply.json(poisoned)] * 30)
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    assert await sweep_often(redis_client, pool, run_burst) == 0
    calls = await list_llm_calls(pool, user_id)
    assert [(c.call.purpose.value, c.call.outcome.value) for c in calls] == [
        ("answer", "schema_invalid"),
        ("repair", "schema_invalid"),
    ]
    assert await dead_runs(pool, job_id) == 1
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "failed"
    assert isinstance(conversation.metadata, dict) and "NUL" in conversation.metadata["failure"]["reason"]
    assert await memory_counts(pool, user_id) == dict.fromkeys(
        ("memory_units", "concepts", "growth_events", "cards", "edges"), 0
    )


async def test_a_write_that_fails_on_every_try_spends_max_tries_llm_calls_in_total(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 10 item 1, the write side: whatever makes the write fail every time (here a trigger in the real
    database), the runtime's dead hook marks the conversation `failed` after the last try and the sweep stops."""
    spec = fast_retries(run_burst)
    user_id, conversation_id = await one_conversation(pool)
    await pool.execute(
        """
        CREATE FUNCTION refuse_memory() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'this write can never succeed'; END $$;
        CREATE TRIGGER refuse_memory BEFORE INSERT ON public.memory_units FOR EACH ROW EXECUTE FUNCTION refuse_memory();
        """
    )
    llm_server.enqueue(*[ScriptedReply.json(SAMPLE_ANSWER)] * 30)
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    assert await sweep_often(redis_client, pool, run_burst) == 0
    assert len(await list_llm_calls(pool, user_id)) == spec.max_tries == 5
    assert await dead_runs(pool, job_id) == 1
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "dead" and run.attempt == spec.max_tries
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "failed"
    assert isinstance(conversation.metadata, dict)
    assert "this write can never succeed" in conversation.metadata["failure"]["reason"]


async def test_a_job_that_times_out_on_every_try_is_failed_after_its_last(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timeout path of the same policy: five tries, five requests, one dead letter, `failed`, no sixth."""
    spec = fast_retries(run_burst, timeout_s=0.3)
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(*[ScriptedReply.json(SAMPLE_ANSWER, delay_s=0.45)] * 30)
    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    assert await sweep_often(redis_client, pool, run_burst, times=3) == 0
    assert len(llm_server.chat_requests) == spec.max_tries
    assert await dead_runs(pool, job_id) == 1
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "failed"
    assert isinstance(conversation.metadata, dict) and "timed out" in conversation.metadata["failure"]["reason"]


async def test_the_dead_hook_is_the_one_policy(pool: asyncpg.Pool, resources: WorkerResources) -> None:
    """What the runtime calls on every dead path: `failed` with the reason, except on a processed conversation
    (a failed reprocess keeps its status and memory) and on one still `active`; a missing one, or an id Postgres
    cannot even hold, is no error."""
    spec = INGEST
    assert spec.on_dead is not None
    user_id, ended_id = await one_conversation(pool)
    processed = await conversations.create_conversation(pool, user_id, status="processed")
    active = await conversations.create_conversation(pool, user_id, status="active")
    ctx = JobContext(
        settings=resources.settings,
        pool=pool,
        redis=resources.redis,
        job_id="ingest:x",
        job_name="ingest",
        attempt=5,
        log=structlog.get_logger("test"),
        resources=resources,
    )
    for conversation_id in (ended_id, processed.id, active.id, "no-such-conversation", "ab\x00cd"):
        await spec.on_dead(ctx, IngestArgs(conversation_id=conversation_id), "timed out after 300 s")

    statuses = {c.id: (c.status, c.metadata) for c in await conversations.list_conversations(pool, user_id)}
    reasons = {
        conversation_id: {key: value["reason"] for key, value in (metadata or {}).items()}
        for conversation_id, (_, metadata) in statuses.items()
    }
    assert statuses[ended_id][0] == "failed" and reasons[ended_id] == {"failure": "timed out after 300 s"}
    assert statuses[processed.id][0] == "processed"
    assert reasons[processed.id] == {"reprocess_failure": "timed out after 300 s"}
    assert statuses[active.id] == ("active", None)


async def test_a_failed_reprocess_leaves_the_conversation_processed_with_its_memory(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """Issue 10 item 3: a reprocess whose answer stayed malformed turned a processed conversation `failed` with all
    its old rows, and every later plain trigger then failed five times on memory_units_pkey."""
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    await ingest(redis_client, pool, conversation_id)
    await run_burst()
    before = await memory_counts(pool, user_id)

    broken = {**SAMPLE_ANSWER, "importance_score": 42}
    llm_server.enqueue(ScriptedReply.json(broken), ScriptedReply.json(broken))
    job_id = await ingest(redis_client, pool, conversation_id, reprocess=True)
    await run_burst()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "dead"
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert isinstance(conversation.metadata, dict)
    assert "importance_score" in conversation.metadata["reprocess_failure"]["reason"]
    assert await memory_counts(pool, user_id) == before

    await ingest(redis_client, pool, conversation_id)  # a plain trigger: already processed, no LLM call
    await run_burst()
    assert len(await list_llm_calls(pool, user_id)) == 3
    assert await memory_counts(pool, user_id) == before

    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))  # a reprocess that works: the old failure is gone
    await ingest(redis_client, pool, conversation_id, reprocess=True)
    await run_burst()
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert isinstance(conversation.metadata, dict) and "reprocess_failure" not in conversation.metadata


async def test_a_plain_trigger_of_a_failed_conversation_holding_memory_replaces_it(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """A conversation left `failed` with its rows (by the old reprocess failure, or the web app): one LLM call,
    the rows replaced, `processed`; before, five tries each failed on memory_units_pkey."""
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER), ScriptedReply.json(SAMPLE_ANSWER))
    await ingest(redis_client, pool, conversation_id)
    await run_burst()
    before = await memory_counts(pool, user_id)
    await pool.execute("UPDATE conversations SET status = 'failed' WHERE id = $1", conversation_id)

    job_id = await ingest(redis_client, pool, conversation_id)
    await run_burst()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded" and run.attempt == 1
    assert run.result is not None and run.result["replaced"]["memory_units"] == before["memory_units"]
    assert await memory_counts(pool, user_id) == before
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert len(await list_llm_calls(pool, user_id)) == 2


async def test_the_conversation_is_processing_while_the_llm_works(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """Issue 12: the status the schema lists and the web app may show; the write still happens exactly once."""
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER, delay_s=0.3))
    await ingest(redis_client, pool, conversation_id)
    worker = asyncio.create_task(run_burst())

    async def status() -> str | None:
        conversation = await conversations.get_conversation(pool, user_id, conversation_id)
        return None if conversation is None else conversation.status

    await wait_until(lambda: _is(status(), "processing"), timeout=10, interval=0.01)
    await worker
    assert await status() == "processed"
    assert (await memory_counts(pool, user_id))["memory_units"] == EXPECTED_FROM_SAMPLE["memory_units"]


async def _is(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def test_the_sweep_does_not_start_over_an_ingestion_that_went_dead_after_it_read(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep reads a `processing` conversation; before it enqueues, that conversation's ingestion goes dead: its
    hook marks it `failed`, then its dead ledger row frees the job id. The enqueue must see `failed` and enqueue
    nothing (it used to start the dead ingestion over with a fresh budget of tries, each an LLM call)."""
    user_id, conversation_id = await one_conversation(pool, status="processing")
    read = conversations.ended_conversation_ids

    async def read_then_go_dead(db: Any, *, limit: int) -> list[str]:
        ids = await read(db, limit=limit)
        await conversations.mark_conversation_failed(pool, user_id, conversation_id, "LLM answer invalid 5 times")
        return ids

    monkeypatch.setattr(conversations, "ended_conversation_ids", read_then_go_dead)
    swept = await end_and_enqueue_ingestion(pool, redis_client, timeout_minutes=10, limit=100)
    assert (swept.ingest_job_ids, swept.ingest_enqueued) == ([f"ingest:{conversation_id}"], 0)
    assert await ledger.latest_run(pool, f"ingest:{conversation_id}") is None  # the row written for the check is gone
    assert not await redis_client.exists(job_key(f"ingest:{conversation_id}"))

    # `jobs retry` of the dead letter, or an operator's enqueue, still starts a failed conversation over
    retried = await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation_id})
    assert retried.enqueued


async def test_the_sweep_picks_up_a_conversation_left_processing_by_a_lost_job(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """A job lost with Redis must not leave its conversation `processing` for ever; while a job for it is queued,
    the sweep enqueues nothing more (the dedupe key)."""
    user_id, conversation_id = await one_conversation(pool, status="processing")
    first = await end_and_enqueue_ingestion(pool, redis_client, timeout_minutes=10, limit=100)
    again = await end_and_enqueue_ingestion(pool, redis_client, timeout_minutes=10, limit=100)
    assert (first.ingest_job_ids, first.ingest_enqueued) == ([f"ingest:{conversation_id}"], 1)
    assert (again.ingest_job_ids, again.ingest_enqueued) == ([f"ingest:{conversation_id}"], 0)

    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    await run_burst()
    conversation = await conversations.get_conversation(pool, user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert len(await list_llm_calls(pool, user_id)) == 1
