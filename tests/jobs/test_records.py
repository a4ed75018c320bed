"""Raw job records as any producer may write them (issue 10 items 0, 2 and 6; issue 12's ledger dates): nothing in
a record stops a worker, every record that reaches a queue ends as a ledger row, and the enqueue script writes
nothing when an argument is bad."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from jobs.diagnostics import ECHO
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, UNRECORDED_DEAD_KEY, job_key, queue_key
from jobs.runtime.queue import PUSH_SCRIPT, peek
from store import ledger
from tests.jobs.conftest import BurstRunner

DOCS = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"


async def _write(redis_client: aioredis.Redis, job_id: str, record: str | bytes, score: float | None = None) -> None:
    """What a producer in another language does: the record, then the queue entry."""
    await redis_client.set(job_key(job_id), record, px=60_000)
    await redis_client.zadd(queue_key(INTERACTIVE), {job_id: time.time() * 1000 if score is None else score})


HOSTILE: dict[str, tuple[str | bytes, str]] = {
    "t-string": ('{"f":"diag.echo","k":{},"t":"1"}', '"t" (the attempt override) must be null or a whole number'),
    "t-huge": ('{"f":"diag.echo","k":{},"t":40000}', '"t" (the attempt override) must be null or a whole number'),
    "et-text": ('{"f":"diag.echo","k":{},"et":"yesterday"}', '"et" must be unix milliseconds or an ISO 8601 time'),
    "et-naive": ('{"f":"diag.echo","k":{},"et":"2026-01-01T00:00:00"}', "has no UTC offset"),
    "et-far": ('{"f":"diag.echo","k":{},"et":1e300}', "is not a unix time in milliseconds between 1970 and 9999"),
    "et-offset": ('{"f":"diag.echo","k":{},"et":"9999-12-31T23:59:59-23:59"}', "between 1970 and 9999"),
    "et-bool": ('{"f":"diag.echo","k":{},"et":true}', '"et" (the enqueue time) must be unix milliseconds'),
    "k-list": ('{"f":"diag.echo","k":["x"]}', '"k" (the arguments) must be a JSON object'),
    "k-string": ('{"f":"diag.echo","k":"x"}', '"k" (the arguments) must be a JSON object'),
    "a-positional": ('{"f":"diag.echo","a":["x","y"],"k":{"mark":"m"}}', '"a" must be empty or left out'),
    "f-list": ('{"f":["diag.echo"],"k":{}}', '"f" (the job name) must be a non-empty string'),
    "not-json": ("{f: diag.echo}", "the job record is not JSON"),
    "not-object": ("[1, 2]", "the job record must be a JSON object"),
    "not-utf8": (b'{"f":"diag.echo","k":{"mark":"\xff"}}', "the job record is not JSON"),
}


async def test_no_record_stops_a_worker_and_each_becomes_a_dead_letter_with_its_reason(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    for job_id, (record, _) in HOSTILE.items():
        await _write(redis_client, job_id, record)
    good = await enqueue(redis_client, pool, ECHO, {})

    await run_burst(timeout=120)  # before the fix: TypeError out of the poll loop, the worker down

    for job_id, (_, reason) in HOSTILE.items():
        run = await ledger.latest_run(pool, job_id)
        assert run is not None, job_id
        assert (run.state, run.error_class) == ("dead", "NotRunnable"), job_id
        assert run.error is not None and reason in run.error and "fix the producer" in run.error, (job_id, run.error)
        assert await redis_client.exists(job_key(job_id)) == 0
    positional = await ledger.latest_run(pool, "a-positional")
    assert positional is not None and (positional.job_name, positional.args) == ("diag.echo", {"mark": "m"})
    ok = await ledger.latest_run(pool, good.job_id)
    assert ok is not None and ok.state == "succeeded"


async def test_an_iso_enqueue_time_from_javascript_is_accepted_and_dates_the_ledger_row(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """JSON.stringify(new Date()) writes "2026-01-01T00:00:00.000Z"; the score is when it may run."""
    score = datetime(2026, 1, 1, 0, 5, tzinfo=UTC).timestamp() * 1000
    await _write(redis_client, "ts-date", '{"f":"diag.echo","k":{},"et":"2026-01-01T00:00:00.000Z"}', score)
    await _write(redis_client, "ts-ms", '{"f":"diag.echo","k":{},"et":1767225600000}', score)

    queued = await peek(redis_client, "ts-date")
    assert queued is not None and (queued.name, queued.args, queued.queue) == ("diag.echo", {}, INTERACTIVE)
    assert queued.enqueued_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert queued.run_at == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    await run_burst()

    for job_id in ("ts-date", "ts-ms"):
        run = await ledger.latest_run(pool, job_id)
        assert run is not None and run.state == "succeeded"
        assert run.enqueued_at == datetime(2026, 1, 1, tzinfo=UTC)  # the record's et, not when a worker saw it
        assert run.run_at == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)  # its queue score
    assert await peek(redis_client, "ts-date") is None


async def test_peek_names_an_unreadable_record(redis_client: aioredis.Redis) -> None:
    await _write(redis_client, "bad", '{"f":"diag.echo","k":[]}')

    queued = await peek(redis_client, "bad")

    assert queued is not None and (queued.name, queued.queue) == (None, INTERACTIVE)
    assert queued.problem is not None and queued.problem.startswith('"k" (the arguments) must be a JSON object')
    assert await peek(redis_client, "missing") is None


async def test_a_record_the_ledger_cannot_hold_is_a_dead_letter_not_a_loop(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """A NUL (Postgres text and jsonb cannot hold it) is recorded escaped; a job id too long for the ledger's index
    goes to the Redis dead-letter list. Before the fix both were rescheduled for ever as "ledger unavailable"."""
    await _write(redis_client, "nul-1", '{"f":"diag.echo","k":{"mark":"ab\\u0000cd"}}')
    long_id = "x" + secrets.token_hex(8000)
    await _write(redis_client, long_id, '{"f":"diag.echo","k":{}}')

    await run_burst(timeout=120)

    run = await ledger.latest_run(pool, "nul-1")
    assert run is not None and (run.state, run.error_class) == ("dead", "NotRunnable")
    assert run.args == {"mark": "ab\\u0000cd"}  # the escaped text, visibly so
    assert run.error is not None and "the ledger cannot record this job as written" in run.error
    assert await redis_client.exists(job_key("nul-1"), job_key(long_id)) == 0
    kept = [json.loads(entry) for entry in await redis_client.lrange(UNRECORDED_DEAD_KEY, 0, -1)]  # type: ignore[misc]
    assert [(e["job_id"], e["queue"], e["error_class"]) for e in kept] == [(long_id, INTERACTIVE, "NotRunnable")]
    assert json.loads(kept[0]["record"]) == {"f": "diag.echo", "k": {}}
    assert "index row" in kept[0]["error"]


@pytest.mark.parametrize(
    ("ttl", "score", "problem"),
    [
        ("86400000", "nan", "score must be a unix time"),
        ("86400000", "inf", "score must be a unix time"),
        ("86400000", "-1", "score must be a unix time"),
        ("86400000", "soon", "score must be a unix time"),
        ("0", "1700000000000", "ttl must be a whole number"),
        ("1.5", "1700000000000", "ttl must be a whole number"),
        ("nan", "1700000000000", "ttl must be a whole number"),
    ],
)
async def test_the_enqueue_script_writes_nothing_when_an_argument_is_bad(
    redis_client: aioredis.Redis, ttl: str, score: str, problem: str
) -> None:
    """Before the fix SET ran before the refused ZADD: the id was blocked for a day with nothing queued."""
    keys = (job_key("ingest:c1"), queue_key(INTERACTIVE))
    with pytest.raises(redis.exceptions.ResponseError, match=problem):
        await redis_client.eval(PUSH_SCRIPT, 2, *keys, '{"f":"ingest","k":{}}', ttl, score, "ingest:c1")  # type: ignore[misc]
    assert await redis_client.exists(*keys) == 0
    added = await redis_client.eval(PUSH_SCRIPT, 2, *keys, '{"f":"ingest","k":{}}', "86400000", "1", "ingest:c1")  # type: ignore[misc]
    assert added == 1


def test_the_documented_typescript_script_is_the_one_orrery_runs() -> None:
    docs = DOCS.read_text()
    for line in PUSH_SCRIPT.strip().splitlines():
        assert line in docs, f"docs/jobs.md's enqueue script lacks: {line}"


async def test_a_queue_score_of_minus_infinity_does_not_stop_a_worker(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """ZADD accepts -inf from a producer that skips the script; the claim used to fail on int(float('-inf'))."""
    await _write(redis_client, "minus-inf", '{"f":"diag.echo","k":{}}', float("-inf"))

    await run_burst(timeout=120)

    run = await ledger.latest_run(pool, "minus-inf")
    assert run is not None and run.state == "succeeded"
