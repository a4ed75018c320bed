"""Every Redis key and queue name the job runtime uses, in one place (arq's own prefixes are re-exported here)."""

from __future__ import annotations

from datetime import datetime

from jobs.runtime.arq_seam import health_check_key_suffix, in_progress_key_prefix, job_key_prefix, retry_key_prefix

INTERACTIVE = "interactive"
"""Low-latency work a user is waiting on (ingestion)."""
BATCH = "batch"
"""Long work that must never delay the interactive queue (insight cycles, maintenance)."""
QUEUES: tuple[str, ...] = (INTERACTIVE, BATCH)

QUEUE_KEY_PREFIX = "orrery:queue:"
CRON_CLAIM_PREFIX = "orrery:cron:"
OUTCOME_PREFIX = "orrery:outcome:"
UNRECORDED_DEAD_KEY = "orrery:dead:unrecorded"
"""A Redis list of dead letters the ledger cannot hold (newest first, capped): JSON objects with job_id, queue,
record (the raw job record as text), error_class, error and at (ISO time)."""

__all__ = [
    "BATCH",
    "INTERACTIVE",
    "QUEUES",
    "UNRECORDED_DEAD_KEY",
    "cron_claim_key",
    "health_key",
    "health_key_pattern",
    "in_progress_key",
    "job_key",
    "outcome_key",
    "queue_key",
    "retry_key",
]


def queue_key(queue: str) -> str:
    """The arq sorted set of a queue: member = job id, score = when it may run (unix ms)."""
    return QUEUE_KEY_PREFIX + queue


def job_key(job_id: str) -> str:
    """The serialized job (JSON); exists while the job is queued, running or waiting for a retry."""
    return job_key_prefix + job_id


def outcome_key(job_id: str) -> str:
    """A finished attempt's outcome the ledger could not take (Postgres away); recorded by the job's next attempt."""
    return OUTCOME_PREFIX + job_id


def in_progress_key(job_id: str) -> str:
    """The lease of a running job: refreshed by its worker's heartbeat, expires job_lease_s after a crash."""
    return in_progress_key_prefix + job_id


def retry_key(job_id: str) -> str:
    """arq's attempt counter for a job."""
    return retry_key_prefix + job_id


def health_key(queue: str, worker_id: str) -> str:
    """One per live worker of a queue, expiring health_check_interval_s + 1 s after its last refresh."""
    return f"{queue_key(queue)}{health_check_key_suffix}:{worker_id}"


def health_key_pattern(queue: str) -> str:
    """Matches the health keys of every worker of a queue (`run.py health`, `jobs queues`)."""
    return f"{queue_key(queue)}{health_check_key_suffix}:*"


def cron_claim_key(job_name: str, slot: datetime) -> str:
    """Claimed with SET NX by the one worker that fires this job's slot."""
    return f"{CRON_CLAIM_PREFIX}{job_name}:{int(slot.timestamp())}"
