"""Hostile raw job records written straight into Redis, as a producer in another language might: each becomes one
dead letter with a reason, and the worker stays alive and serves the good jobs queued after them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from jobs.diagnostics import ECHO
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, UNRECORDED_DEAD_KEY, job_key, queue_key
from store import ledger
from store.repos import conversations, users
from tests.faults.conftest import STALL_S, Fleet, documented_enqueue_script, raw_record, worker_group
from tests.jobs.conftest import FAST_ENV, BurstRunner, wait_for_workers, wait_progressing

HOSTILE: dict[str, str] = {
    "et-string": raw_record("c-et", et="2026-01-01T00:00:00Z"),  # JSON.stringify({et: new Date()})
    "t-string": raw_record("c-t", t="1"),
    "k-list": json.dumps({"f": "ingest", "k": ["c-k-list"]}),
    "k-string": json.dumps({"f": "ingest", "k": "c-k-string"}),
    "positional-a": raw_record("c-a", a=["x", "y"]),
    "nul-in-args": raw_record("ab\u0000cd"),
    "bad-args": raw_record("c-bad", reprocess="sometimes"),
    "unknown-job": json.dumps({"f": "no.such.job", "k": {}}),
    "not-json": "{not json",
    "json-not-object": "[1, 2, 3]",
}
"""Job id suffix → the record stored under arq:job:hostile:{suffix}."""

LEASE_S = float(FAST_ENV["ORRERY_JOB_LEASE_S"])


async def _write(redis: aioredis.Redis, job_id: str, record: str, score_ms: int) -> None:
    await redis.set(job_key(job_id), record, px=86_400_000)
    await redis.zadd(queue_key(INTERACTIVE), {job_id: score_ms})


async def test_hostile_records_become_dead_letters_and_the_worker_keeps_serving(
    database_url: str, redis_url: str, pool: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    group = worker_group(database_url, redis_url, tmp_path, {})
    try:
        fleet = Fleet(group, 1, "--queue", INTERACTIVE, "--concurrency", "2")
        await wait_for_workers(redis_client, 1)
        now_ms = int(time.time() * 1000)
        hostile_ids = [f"hostile:{name}" for name in HOSTILE]
        for offset, (job_id, record) in enumerate(zip(hostile_ids, HOSTILE.values(), strict=True)):
            await _write(redis_client, job_id, record, now_ms + offset)
        unstorable_id = "hostile:nul\u0000id"  # not even the ledger can hold this id
        await _write(redis_client, unstorable_id, raw_record("c-nul-id"), now_ms)
        good = [await enqueue(redis_client, pool, ECHO, {"mark": f"after-{i}"}) for i in range(3)]

        rows: list[asyncpg.Record] = []

        async def finished() -> int:
            nonlocal rows
            rows = await pool.fetch(
                "SELECT job_id, state, error_class, error FROM runtime.job_runs WHERE job_id = ANY($1::text[])",
                [*hostile_ids, *(g.job_id for g in good)],
            )
            return len([r for r in rows if r["state"] in ("succeeded", "dead")])

        expected = len(hostile_ids) + len(good)
        await wait_progressing(finished, lambda n: n == expected or bool(fleet.dead()), stall_s=STALL_S)
        await asyncio.sleep(LEASE_S + 1)  # a worker that crashed on a record would meet it again once its lease expired

        assert not fleet.dead(), fleet.dead()
        by_id: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_id.setdefault(row["job_id"], []).append(row)
        problems = []
        for job_id in hostile_ids:
            found = by_id.get(job_id, [])
            if [r["state"] for r in found] != ["dead"] or not found[0]["error"]:
                problems.append(f"{job_id}: {[(r['state'], r['error_class'], r['error']) for r in found]}")
        for result in good:
            if [r["state"] for r in by_id.get(result.job_id, [])] != ["succeeded"]:
                problems.append(f"good job {result.job_id} queued after them: {by_id.get(result.job_id)}")
        assert not problems, "records without exactly one dead letter, or good jobs not served:\n" + "\n".join(problems)
        for job_id in [*hostile_ids, unstorable_id]:
            assert await redis_client.zscore(queue_key(INTERACTIVE), job_id) is None, f"{job_id!r} is still queued"
        kept = [json.loads(e)["job_id"] for e in await redis_client.lrange(UNRECORDED_DEAD_KEY, 0, -1)]  # type: ignore[misc]
        escaped = await pool.fetchval(
            "SELECT count(*) FROM runtime.job_runs WHERE job_id LIKE 'hostile:nul%id' AND state = 'dead'"
        )
        assert kept.count(unstorable_id) + escaped == 1, (kept, escaped)  # in the ledger, escaped, or kept in Redis

        later = await enqueue(redis_client, pool, ECHO, {"mark": "still-serving"})

        async def state() -> str | None:
            found: str | None = await pool.fetchval(
                "SELECT state FROM runtime.job_runs WHERE job_id = $1 ORDER BY id DESC LIMIT 1", later.job_id
            )
            return found

        try:
            await wait_progressing(state, lambda now: now == "succeeded", stall_s=STALL_S, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"the worker no longer serves jobs: {fleet.dead()}") from exc
        print(f"FAULTS hostile-records: records={len(HOSTILE) + 1} dead_letters={len(hostile_ids)} worker_exits=0")
    finally:
        group.stop_all()


async def test_a_nan_score_through_the_documented_script_writes_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """The script docs/jobs.md gives producers validates before it writes: a NaN score must not leave a job record
    with no queue entry, which would refuse every later enqueue of that conversation for a day."""
    job_id = "ingest:c-nan"
    with pytest.raises(aioredis.ResponseError):
        await redis_client.eval(  # type: ignore[misc]
            documented_enqueue_script(),
            2,
            job_key(job_id),
            queue_key(INTERACTIVE),
            raw_record("c-nan"),
            "86400000",
            "nan",
            job_id,
        )
    assert await redis_client.exists(job_key(job_id)) == 0
    assert (await enqueue(redis_client, pool, INGEST, {"conversation_id": "c-nan"})).enqueued


async def test_a_record_naming_a_real_conversation_that_never_ran_changes_no_domain_row(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """Issue 18 defect 5: a positional argument makes the record a NotRunnable dead letter (right), but it must not
    take the real conversation it names out of ingestion: nothing ran, so nothing of it may change."""
    user = await users.create_user(pool, str(uuid.uuid4()), email="stray@faults.invalid", name="Ana")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    record = json.dumps({"f": "ingest", "a": ["x"], "k": {"conversation_id": conversation.id}})
    await _write(redis_client, "hostile:real-conversation", record, int(time.time() * 1000))

    await run_burst(queues=(INTERACTIVE,))

    run = await ledger.latest_run(pool, "hostile:real-conversation")
    assert run is not None and (run.state, run.error_class) == ("dead", "NotRunnable"), run
    after = await conversations.get_conversation(pool, user.user_id, conversation.id)
    assert after is not None and (after.status, after.metadata) == ("ended", conversation.metadata)
    assert conversation.id in await conversations.ended_conversation_ids(pool, limit=1000)  # the sweep still ingests it
