"""Taking due jobs off a queue: one Redis round trip per poll, however many jobs are due or already running.

Why not arq's own claim: arq reads up to 100 due ids and then, one id at a time, waits for a free slot and runs
WATCH, EXISTS, ZSCORE and MULTI/EXEC (or UNWATCH) on it. Jobs stay in the queue while they run, so every poll walks
over the jobs this worker and the others are already running: three to four round trips per id, about three ids per
job started (measured with strace under bench/bench_ingest.py), half of the worker's Redis traffic. This Lua script
does the same checks and claims in Redis itself, atomically, so no WATCH is needed either.

The claim is arq's: a job is running while its in-progress key exists (the lease, jobs/runtime/worker.py), and a due job
without that key is free to take.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from jobs.runtime.keys import in_progress_key

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
"""KEYS[1] the queue; ARGV: now (ms), how many to claim, lease (ms), due ids read per step, the most due ids to look
at, the lease prefix. Returns [job id, score, job id, score, ...] of the jobs it claimed, oldest first.

Due jobs that are running (leased) stay at the head of the queue, so the script reads on past them a step at a time;
the limit only bounds a pathological queue whose first thousands of due jobs are all running."""

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
