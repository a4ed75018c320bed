"""The queue as Redis holds it: every Lua script the runtime runs, and every read of its keys by anything other than
the worker's own loop (the CLI's views, the sync dispatcher's follow-up, forget-user, the metrics, the generated
TypeScript client), in one module.

Why one module: the queue is three kinds of keys (jobs/runtime/keys.py names them) that several programs read and
write: the worker, the CLI, other languages' producers. Kept here, a change of layout or of a script is one diff
that every reader follows, and a script's argument checks are written once. The worker's own per-attempt
bookkeeping (leases refreshed, outcomes kept while Postgres is away) stays in jobs/runtime/worker.py and attempt.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from jobs.runtime import wire
from jobs.runtime.keys import (
    QUEUE_KEY_PREFIX,
    QUEUES,
    UNRECORDED_DEAD_KEY,
    health_key_pattern,
    in_progress_key,
    job_key,
    outcome_key,
    queue_key,
    retry_key,
)

JOB_KEY_PREFIX = job_key("")
"""What producers in other languages prefix a job id with (clients/generate.py writes it into the TypeScript client);
QUEUE_KEY_PREFIX likewise for a queue's name."""
__all__ = ["JOB_KEY_PREFIX", "QUEUE_KEY_PREFIX", "UNRECORDED_DEAD_KEY"]  # the names readers outside the runtime use

# --- writing: the scripts ----------------------------------------------------------------------------------------

PUSH_SCRIPT = """
local ttl = tonumber(ARGV[2])
local score = tonumber(ARGV[3])
if ttl == nil or ttl ~= ttl or ttl < 1 or ttl > 1e15 or ttl % 1 ~= 0 then
    return redis.error_reply('ERR enqueue: ttl must be a whole number of milliseconds >= 1, not ' .. tostring(ARGV[2]))
end
if score == nil or score ~= score or score < 0 or score > 253402300799999 then
    return redis.error_reply('ERR enqueue: score must be a unix time in ms (1970..9999), not ' .. tostring(ARGV[3]))
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], score, ARGV[4])
return 1
"""
"""Set the job record and add it to its queue unless a job with this id exists: one atomic round trip (arq's own
enqueue_job needs four for the same WATCH/MULTI check). KEYS: the job key, the queue; ARGV: record, ttl (ms), score
(unix ms), job id. Every argument is checked before anything is written: a script that errors half-way is not
rolled back, so a refused ZADD (a NaN score) after the SET used to leave a job key that blocked its id for a day.
docs/jobs.md gives this same script to producers in other languages (clients/generate.py copies it for TypeScript)."""


async def push(redis: aioredis.Redis, *, job_id: str, queue: str, record: bytes, ttl_ms: int, score_ms: int) -> bool:
    """Write a job record and its queue entry; False when a job with this id is already queued or running."""
    keys_and_args = (job_key(job_id), queue_key(queue), record.decode(), str(ttl_ms), str(score_ms), job_id)
    added = await redis.eval(PUSH_SCRIPT, 2, *keys_and_args)  # type: ignore[misc]  # redis-py types it as a union
    return bool(added)


CLAIM_SCRIPT = """
local wanted = tonumber(ARGV[2])
local chunk = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local claimed = {}
local offset = 0
while #claimed < 2 * wanted and offset < limit do
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', offset, chunk)
    if #due == 0 then break end
    for i = 1, #due, 2 do
        if #claimed >= 2 * wanted then break end
        local lease = ARGV[6] .. due[i]
        if redis.call('EXISTS', lease) == 0 then
            redis.call('PSETEX', lease, ARGV[3], '1')
            claimed[#claimed + 1] = due[i]
            claimed[#claimed + 1] = due[i + 1]
        end
    end
    offset = offset + chunk
end
return claimed
"""
"""Take due jobs off a queue in one round trip. KEYS[1] the queue; ARGV: now (ms), how many to claim, lease (ms), due
ids read per step, the most due ids to look at, the lease prefix. Returns [job id, score, …] of the jobs it claimed,
oldest first.

Why not arq's own claim: arq reads up to 100 due ids and then, one id at a time, runs WATCH, EXISTS, ZSCORE and
MULTI/EXEC on it; jobs stay in the queue while they run, so every poll walked over the running jobs too: three to
four round trips per id, half of the worker's Redis traffic (measured with strace under bench/bench_ingest.py).
The claim is arq's: a job is running while its in-progress key (the lease) exists; a due job without one is free.
Running jobs stay at the head of the queue, so the script reads on past them a step at a time; the limit only
bounds a pathological queue whose first thousands of due jobs are all running."""

SCAN_STEP = 100
SCAN_LIMIT = 10_000
LEASE_PREFIX = in_progress_key("")


@dataclass(frozen=True)
class Claimed:
    job_id: str
    score: int  # when the job was due (unix ms), which arq's run_job wants; a producer's -inf counts as 0


class QueueClaimer:
    """Claims due jobs of one queue for a worker; the script is loaded once and then run by its SHA."""

    def __init__(
        self,
        redis: aioredis.Redis,
        queue_key: str,
        *,
        lease_ms: int,
        scan_step: int = SCAN_STEP,
        scan_limit: int = SCAN_LIMIT,
    ) -> None:
        self._script: AsyncScript = redis.register_script(CLAIM_SCRIPT)
        self._queue_key = queue_key
        self._lease_ms = lease_ms
        self._scan_step = scan_step
        self._scan_limit = scan_limit

    async def claim(self, now_ms: int, wanted: int) -> list[Claimed]:
        """Up to `wanted` due jobs that no worker holds a lease on, each now leased to the caller."""
        if wanted < 1:
            return []
        reply = await self._script(
            keys=[self._queue_key],
            args=[now_ms, wanted, self._lease_ms, self._scan_step, self._scan_limit, LEASE_PREFIX],
        )
        return [
            Claimed(job_id=_text(reply[index]), score=int(max(float(_text(reply[index + 1])), 0.0)))
            for index in range(0, len(reply), 2)
        ]


REMOVE_SCRIPT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[4])
return 1
"""
"""Take a queued job out of Redis unless a worker holds its lease. KEYS: queue, job, in-progress, retry; ARGV: job
id. Returns 0 (and changes nothing) when it is running: a running job is left to finish."""


async def remove_queued(redis: aioredis.Redis, job_id: str, queue: str) -> bool:
    """Remove a job that no worker runs (`jobs cancel`, forget-user); False when a worker runs it now."""
    keys = (queue_key(queue), job_key(job_id), in_progress_key(job_id), retry_key(job_id))
    removed = await redis.eval(REMOVE_SCRIPT, 4, *keys, job_id)  # type: ignore[misc]
    return bool(removed)


async def make_due(redis: aioredis.Redis, queue: str, job_ids: Sequence[str], at_ms: int) -> int:
    """Move queued jobs' due time to `at_ms` (the benchmarks release a backlog enqueued for later at once); ids not
    queued are left out. Returns how many moved."""
    if not job_ids:
        return 0
    return int(await redis.zadd(queue_key(queue), dict.fromkeys(job_ids, at_ms), xx=True, ch=True))


# --- reading one job ---------------------------------------------------------------------------------------------


async def holds(redis: aioredis.Redis, job_id: str) -> bool:
    """Whether Redis has a record of the job (queued, waiting for a retry or running)."""
    return bool(await redis.exists(job_key(job_id)))


@dataclass(frozen=True)
class Presence:
    """Whether a job id is in Redis, cheaply (no record is read): for the sync dispatcher's follow-up."""

    queued: bool
    """Its record exists (queued, waiting for a retry, or running)."""
    running: bool
    """A worker holds its lease."""
    due_ms: float | None
    """Its score in `queue` (when it may start), None when that queue does not hold it."""


async def presence(redis: aioredis.Redis, job_id: str, queue: str) -> Presence:
    """One round trip."""
    return (await presences(redis, [job_id], queue))[0]


async def presences(redis: aioredis.Redis, job_ids: Sequence[str], queue: str) -> list[Presence]:
    """`presence` of each job, in order, in one round trip whatever their number."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(job_key(job_id))
            pipe.exists(in_progress_key(job_id))
            pipe.zscore(queue_key(queue), job_id)
        answers = await pipe.execute()
    return [Presence(bool(q), bool(r), due) for q, r, due in zip(*[iter(answers)] * 3, strict=True)]


@dataclass(frozen=True)
class QueuedJob:
    """A job as Redis holds it now, read without a worker: for a job another program enqueued that no worker has
    started yet, this is all there is (its ledger row is written when a worker starts it)."""

    job_id: str
    name: str | None
    """None when the record is unreadable; `problem` says why."""
    args: Any
    queue: str | None
    """The queue whose sorted set holds the id (None: a record with no queue entry, which no worker will run)."""
    enqueued_at: datetime | None
    """The record's `et`."""
    run_at: datetime | None
    """The queue score: when the job may start (or retry)."""
    running: bool
    """A worker holds its lease."""
    problem: str | None = None
    """Why a worker will refuse the record (it becomes a NotRunnable dead letter), when it will."""

    @property
    def state(self) -> str:
        return "running" if self.running else "queued" if self.queue else "orphaned"


async def peek(redis: aioredis.Redis, job_id: str) -> QueuedJob | None:
    """The job `job_id` as Redis holds it (record, queue score, lease); None when Redis has no record of it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key(job_id))
        pipe.exists(in_progress_key(job_id))
        for each in QUEUES:
            pipe.zscore(queue_key(each), job_id)
        stored, running, *scores = await pipe.execute()
    if stored is None:
        return None
    found: tuple[str | None, float | None] = next(
        ((q, s) for q, s in zip(QUEUES, scores, strict=True) if s is not None), (None, None)
    )
    queue, score = found
    problem: str | None = None
    try:
        record = wire.deserialize(stored)
    except wire.RecordError as exc:
        record, problem = {}, str(exc)
    name = record.get("f")
    return QueuedJob(
        job_id=job_id,
        name=name if isinstance(name, str) else None,
        args=record.get("k"),
        queue=queue,
        enqueued_at=_from_ms(record.get("et")),
        run_at=_from_ms(score),
        running=bool(running),
        problem=problem,
    )


# --- reading the queues and the workers --------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    depth: int
    ready: int
    """Due now (the rest are scheduled later)."""
    oldest_ready_age_s: float
    """How long the oldest due job has waited; 0 when none is due."""


async def depths(redis: aioredis.Redis, queues: Sequence[str] = QUEUES) -> list[QueueDepth]:
    """Each queue's depth, due jobs and the oldest due job's wait, in one pipeline (`jobs queues`, the metrics)."""
    now_ms = time.time() * 1000
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(queue_key(queue))
            pipe.zcount(queue_key(queue), "-inf", now_ms)
            pipe.zrange(queue_key(queue), 0, 0, withscores=True)
        replies = await pipe.execute()
    found = []
    for index, queue in enumerate(queues):
        depth, ready, first = replies[3 * index : 3 * index + 3]
        oldest_s = max(now_ms - first[0][1], 0.0) / 1000 if first and ready else 0.0
        found.append(QueueDepth(queue, int(depth), int(ready), round(oldest_s, 3)))
    return found


@dataclass(frozen=True)
class WorkerReport:
    worker_id: str
    line: str
    """Its health line: `ok …`, `degraded: Postgres unreachable for 12 s …` while it waits for a store, or
    `warming: opening embedder` while it opens what its jobs need."""

    @property
    def serving(self) -> bool:
        """A worker claims jobs unless its health line says it is degraded (jobs/runtime/outage.py) or still warming
        (opening what its jobs need, like the local embedding model, before it takes work)."""
        return not self.line.startswith(("degraded", "warming"))


async def workers(redis: aioredis.Redis, queues: Sequence[str] = QUEUES) -> dict[str, list[WorkerReport]]:
    """The workers of each queue whose health key is alive, by worker id."""
    found: dict[str, list[WorkerReport]] = {}
    for queue in queues:
        reports = []
        async for key in redis.scan_iter(match=health_key_pattern(queue), count=500):
            value = await redis.get(key)
            if value is not None:  # expired between the scan and the read
                reports.append(WorkerReport(key.decode().rsplit(":health-check:", 1)[-1], value.decode()))
        found[queue] = sorted(reports, key=lambda report: report.worker_id)
    return found


# --- reading what names a user (forget-user) ---------------------------------------------------------------------


def names_any(value: Any, ids: Collection[str]) -> bool:
    """Whether a job argument holds one of the ids as a text value, at any depth."""
    if isinstance(value, str):
        return value in ids
    if isinstance(value, dict):
        return any(names_any(item, ids) for item in value.values())
    if isinstance(value, list):
        return any(names_any(item, ids) for item in value)
    return False


@dataclass(frozen=True)
class NamedJob:
    job_id: str
    queue: str
    running: bool


async def jobs_naming(redis: aioredis.Redis, ids: Collection[str]) -> list[NamedJob]:
    """Jobs in any queue whose arguments name one of the ids (read from Redis, so jobs a producer wrote straight
    into Redis, which the ledger has not seen yet, are found too)."""
    found: list[NamedJob] = []
    for queue in QUEUES:
        members = [m.decode() for m in await redis.zrange(queue_key(queue), 0, -1)]
        for start in range(0, len(members), 500):
            chunk = members[start : start + 500]
            records = await redis.mget([job_key(job_id) for job_id in chunk])
            running = await redis.mget([in_progress_key(job_id) for job_id in chunk])
            for job_id, raw, lease in zip(chunk, records, running, strict=True):
                try:
                    args = json.loads(raw).get("k") if raw else None
                except (ValueError, AttributeError):
                    continue
                if names_any(args, ids):
                    found.append(NamedJob(job_id, queue, lease is not None))
    return found


async def kept_outcomes(redis: aioredis.Redis, job_ids: Sequence[str]) -> list[str]:
    """The keys of outcomes the ledger could not take (Postgres away) that Redis still keeps for these jobs."""
    if not job_ids:
        return []
    keys = [outcome_key(job_id) for job_id in job_ids]
    return [key for key, there in zip(keys, await redis.mget(keys), strict=True) if there is not None]


async def delete_kept_outcomes(redis: aioredis.Redis, job_ids: Sequence[str]) -> int:
    keys = await kept_outcomes(redis, job_ids)
    return int(await redis.delete(*keys)) if keys else 0


# --- the dead letters the ledger could not hold ------------------------------------------------------------------


@dataclass(frozen=True)
class UnrecordedDead:
    """An entry of UNRECORDED_DEAD_KEY: a dead letter with text Postgres refuses even escaped, kept in Redis."""

    raw: bytes
    entry: dict[str, Any]
    """job_id, queue, record (the job record as text), error_class, error, at; a placeholder when unreadable."""
    job_name: str | None
    args: Any


def _unrecorded(raw: bytes) -> UnrecordedDead:
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        entry = {"job_id": "?", "error_class": "Unreadable", "error": repr(raw)[:200]}
    try:
        record = json.loads(entry.get("record") or "null")
    except (ValueError, TypeError):
        record = None
    name = record.get("f") if isinstance(record, dict) else None
    args = record.get("k") if isinstance(record, dict) else None
    return UnrecordedDead(raw, entry, name if isinstance(name, str) else None, args)


async def unrecorded_dead(redis: aioredis.Redis, limit: int | None = None) -> list[UnrecordedDead]:
    """The dead letters kept in Redis, newest first (at most `limit`)."""
    stop = -1 if limit is None else limit - 1
    return [_unrecorded(raw) for raw in await redis.lrange(UNRECORDED_DEAD_KEY, 0, stop)]  # type: ignore[misc]


async def drop_unrecorded(redis: aioredis.Redis, entries: Sequence[UnrecordedDead]) -> int:
    """Delete these entries from the list (each by its exact bytes)."""
    dropped = 0
    for entry in entries:
        dropped += int(await redis.lrem(UNRECORDED_DEAD_KEY, 0, entry.raw))  # type: ignore[misc,arg-type]
    return dropped


def _from_ms(value: Any) -> datetime | None:
    try:
        moment = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 <= moment <= wire.MAX_ENQUEUE_TIME_MS:
        return None
    return datetime.fromtimestamp(moment / 1000, UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
