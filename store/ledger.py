"""The job ledger (runtime.job_runs): every run's state, attempt, error and timings, and the dead-letter list.

Written by the job runtime only, never by handlers, with one statement per transition so that it stays a small part
of a job's cost (bench/bench_dispatch.py measures it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from store.postgres import Executor

RunState = Literal["queued", "running", "failed", "succeeded", "dead", "cancelled"]
ACTIVE_STATES: tuple[RunState, ...] = ("queued", "running", "failed")
FINAL_STATES: tuple[RunState, ...] = ("succeeded", "dead", "cancelled")
STATES: tuple[RunState, ...] = (*ACTIVE_STATES, *FINAL_STATES)

_ACTIVE = "state IN ('queued', 'running', 'failed')"
_COLUMNS = (
    "id, job_id, job_name, queue, args, state, attempt, max_tries, error_class, error, result, worker_id, "
    "enqueued_at, run_at, started_at, finished_at, duration_ms, updated_at, trace_id"
)


@dataclass(frozen=True)
class JobRun:
    id: int
    job_id: str
    job_name: str
    queue: str
    args: dict[str, Any]
    state: RunState
    attempt: int
    max_tries: int
    error_class: str | None
    error: str | None
    result: dict[str, Any] | None
    worker_id: str | None
    enqueued_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    updated_at: datetime
    trace_id: str | None
    """The OpenTelemetry trace of the latest attempt (None without tracing)."""


def printable(value: Any) -> Any:
    """`value` with what Postgres text and jsonb cannot hold (NUL, lone surrogates) written out as escapes, for a
    dead letter that must be recorded whatever its producer put in it."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable(item) for item in value]
    return value


def _run(record: Any) -> JobRun:
    return JobRun(**dict(record))


async def insert_queued(
    db: Executor, *, job_id: str, job_name: str, queue: str, args: Mapping[str, Any], max_tries: int, run_at: datetime
) -> int | None:
    """A new 'queued' run, or None when this job id already has an active run (the dedupe check)."""
    run_id: int | None = await db.fetchval(
        f"""
        INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, max_tries, run_at)
        VALUES ($1, $2, $3, $4, 'queued', $5, $6)
        ON CONFLICT (job_id) WHERE {_ACTIVE} DO NOTHING
        RETURNING id
        """,
        job_id,
        job_name,
        queue,
        dict(args),
        max_tries,
        run_at,
    )
    return run_id


async def delete_run(db: Executor, run_id: int) -> None:
    """Undo insert_queued when Redis refused the job (someone enqueued the same id directly in Redis first)."""
    await db.execute("DELETE FROM runtime.job_runs WHERE id = $1 AND state = 'queued'", run_id)


async def mark_lost(db: Executor, job_id: str) -> None:
    """An active row whose job is gone from Redis (data loss, a finish never recorded) becomes a dead letter."""
    await db.execute(
        f"""
        UPDATE runtime.job_runs
        SET state = 'dead', error_class = 'LostJob', finished_at = now(), updated_at = now(),
            error = 'the job disappeared from Redis before it finished; `jobs retry` re-enqueues it'
        WHERE job_id = $1 AND {_ACTIVE}
        """,
        job_id,
    )


@dataclass(frozen=True)
class StartedRun:
    run_id: int
    unfinished: bool
    """The previous attempt with this number was marked running and never finished in the ledger: its outcome may be
    waiting in Redis (jobs/runtime/attempt.py records it before anything else)."""
    taken_over: bool = False
    """An earlier attempt was still marked running: its worker died and this attempt took the run over."""


async def start_run(
    db: Executor,
    *,
    job_id: str,
    job_name: str,
    queue: str,
    args: Mapping[str, Any],
    attempt: int,
    max_tries: int,
    worker_id: str,
    enqueued_at: datetime | None = None,
    run_at: datetime | None = None,
    trace_id: str | None = None,
) -> StartedRun:
    """Mark the active run 'running' (creating it when a non-Python producer enqueued straight into Redis: then
    `enqueued_at` is the record's `et` and `run_at` its queue score, not the moment a worker first saw it).

    `taken_over`: the row was 'running' at a lower attempt, i.e. the worker of that attempt died mid-run (a try
    given back after an outage keeps its attempt number, so it is not counted)."""
    row = await db.fetchrow(
        f"""
        WITH previous AS (SELECT state, attempt FROM runtime.job_runs WHERE job_id = $1 AND {_ACTIVE})
        INSERT INTO runtime.job_runs
            (job_id, job_name, queue, args, state, attempt, max_tries, worker_id, started_at, enqueued_at, run_at,
             trace_id)
        VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, now(), COALESCE($8, now()), COALESCE($9, now()), $10)
        ON CONFLICT (job_id) WHERE {_ACTIVE} DO UPDATE
        SET state = 'running', attempt = EXCLUDED.attempt, worker_id = EXCLUDED.worker_id, started_at = now(),
            updated_at = now(), trace_id = EXCLUDED.trace_id
        RETURNING id, COALESCE((SELECT state = 'running' AND attempt = $5 FROM previous), false) AS unfinished,
            COALESCE((SELECT state = 'running' AND attempt < $5 FROM previous), false) AS taken_over
        """,
        job_id,
        job_name,
        queue,
        dict(args),
        attempt,
        max_tries,
        worker_id,
        enqueued_at,
        run_at,
        trace_id,
    )
    assert row is not None  # INSERT … ON CONFLICT DO UPDATE always returns its row
    return StartedRun(run_id=row["id"], unfinished=row["unfinished"], taken_over=row["taken_over"])


async def finish_run(
    db: Executor,
    run_id: int,
    *,
    state: RunState,
    duration_ms: int,
    error_class: str | None = None,
    error: str | None = None,
    result: Mapping[str, Any] | None = None,
    run_at: datetime | None = None,
) -> None:
    """Record how an attempt ended: final ('succeeded', 'dead') or waiting for its next try ('failed', 'queued')."""
    await db.execute(
        """
        UPDATE runtime.job_runs
        SET state = $2, duration_ms = $3, error_class = $4, error = $5, result = $6,
            run_at = COALESCE($7, run_at),
            finished_at = CASE WHEN $2 IN ('succeeded', 'dead') THEN now() END,
            updated_at = now()
        WHERE id = $1
        """,
        run_id,
        state,
        duration_ms,
        error_class,
        error,
        dict(result) if result is not None else None,
        run_at,
    )


async def mark_unrunnable(
    db: Executor, *, job_id: str, job_name: str, queue: str, args: Mapping[str, Any], error_class: str, error: str
) -> None:
    """A job the runtime could not even start (unknown job name, unreadable record, expired) becomes a dead letter,
    with a row of its own when a non-Python producer enqueued it and no row exists yet."""
    await db.execute(
        f"""
        WITH updated AS (
            UPDATE runtime.job_runs
            SET state = 'dead', error_class = $5, error = $6, finished_at = now(), updated_at = now()
            WHERE job_id = $1 AND {_ACTIVE}
            RETURNING id
        )
        INSERT INTO runtime.job_runs (job_id, job_name, queue, args, state, max_tries, error_class, error, finished_at)
        SELECT $1, $2, $3, $4, 'dead', 1, $5, $6, now()
        WHERE NOT EXISTS (SELECT 1 FROM updated)
        """,
        job_id,
        job_name,
        queue,
        dict(args),
        error_class,
        error,
    )


async def runs_of(db: Executor, job_id: str, *, limit: int = 20) -> list[JobRun]:
    """Every run of a job id, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM runtime.job_runs WHERE job_id = $1 ORDER BY id DESC LIMIT $2", job_id, limit
    )
    return [_run(r) for r in rows]


async def latest_run(db: Executor, job_id: str) -> JobRun | None:
    runs = await runs_of(db, job_id, limit=1)
    return runs[0] if runs else None


async def latest_states(db: Executor, job_ids: list[str]) -> dict[str, RunState]:
    """The state of each job id's newest run, in one statement (ids without a run are left out)."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (job_id) job_id, state FROM runtime.job_runs WHERE job_id = ANY($1::text[]) "
        "ORDER BY job_id, id DESC",
        job_ids,
    )
    return {row["job_id"]: row["state"] for row in rows}


async def latest_runs(db: Executor, job_ids: list[str]) -> dict[str, JobRun]:
    """Each job id's newest run, in one statement (ids without a run are left out)."""
    rows = await db.fetch(
        f"SELECT DISTINCT ON (job_id) {_COLUMNS} FROM runtime.job_runs WHERE job_id = ANY($1::text[]) "
        "ORDER BY job_id, id DESC",
        job_ids,
    )
    return {row["job_id"]: _run(row) for row in rows}


async def runs_naming_user(db: Executor, user_id: str, job_names: list[str], *, limit: int) -> list[JobRun]:
    """The newest runs of these jobs whose arguments name the user (`args.user_id`), newest first: a user's history
    in, say, the cycle chain (on the job_runs_user_id_idx index)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM runtime.job_runs WHERE args ? 'user_id' AND args ->> 'user_id' = $1 "
        "AND job_name = ANY($2::text[]) ORDER BY id DESC LIMIT $3",
        user_id,
        job_names,
        limit,
    )
    return [_run(r) for r in rows]


async def dead_to_revive(
    db: Executor, job_names: list[str], *, died_since: datetime, below_dead_runs: int, limit: int
) -> list[JobRun]:
    """Runs of these jobs that are their job id's newest, died since `died_since`, and whose job id has died fewer
    than `below_dead_runs` times: what a bounded recovery may enqueue once more, oldest death first."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM runtime.job_runs d
        WHERE state = 'dead' AND finished_at >= $2 AND job_name = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM runtime.job_runs n WHERE n.job_id = d.job_id AND n.id > d.id)
          AND (SELECT count(*) FROM runtime.job_runs p WHERE p.job_id = d.job_id AND p.state = 'dead') < $3
        ORDER BY finished_at, id LIMIT $4
        """,
        job_names,
        died_since,
        below_dead_runs,
        limit,
    )
    return [_run(r) for r in rows]


async def get_run(db: Executor, run_id: int) -> JobRun | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM runtime.job_runs WHERE id = $1", run_id)
    return _run(row) if row is not None else None


async def dead_letters(db: Executor, *, limit: int = 50, job_name: str | None = None) -> list[JobRun]:
    """Dead runs, newest first, leaving out jobs that have since been retried or re-enqueued."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM runtime.job_runs d
        WHERE state = 'dead' AND ($2::text IS NULL OR job_name = $2)
          AND NOT EXISTS (SELECT 1 FROM runtime.job_runs n WHERE n.job_id = d.job_id AND n.id > d.id)
        ORDER BY finished_at DESC LIMIT $1
        """,
        limit,
        job_name,
    )
    return [_run(r) for r in rows]


async def recent_runs(
    db: Executor,
    *,
    limit: int = 50,
    job_name: str | None = None,
    state: RunState | None = None,
    since: datetime | None = None,
) -> list[JobRun]:
    """Runs newest first (by enqueue time), optionally of one job, in one state, enqueued since a moment."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM runtime.job_runs
        WHERE ($2::text IS NULL OR job_name = $2) AND ($3::text IS NULL OR state = $3)
          AND ($4::timestamptz IS NULL OR enqueued_at >= $4)
        ORDER BY enqueued_at DESC, id DESC LIMIT $1
        """,
        limit,
        job_name,
        state,
        since,
    )
    return [_run(r) for r in rows]


async def cancel(db: Executor, *, job_id: str, job_name: str, queue: str, args: Mapping[str, Any], reason: str) -> bool:
    """The job id's active run becomes 'cancelled' (final); with no active run, one is recorded as cancelled when
    `job_name` is known (a job another program wrote straight into Redis). False when there was nothing to cancel."""
    changed: int = await db.fetchval(
        f"""
        WITH updated AS (
            UPDATE runtime.job_runs
            SET state = 'cancelled', error_class = 'Cancelled', error = $5, finished_at = now(), updated_at = now()
            WHERE job_id = $1 AND {_ACTIVE}
            RETURNING id
        ), inserted AS (
            INSERT INTO runtime.job_runs
                (job_id, job_name, queue, args, state, max_tries, error_class, error, finished_at)
            SELECT $1, $2, $3, $4, 'cancelled', 1, 'Cancelled', $5, now()
            WHERE NOT EXISTS (SELECT 1 FROM updated) AND $2 <> ''
            RETURNING id
        )
        SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
        """,
        job_id,
        job_name,
        queue,
        dict(args),
        reason,
    )
    return changed > 0


async def purge_dead(
    db: Executor, *, job_ids: list[str] | None = None, job_name: str | None = None, before: datetime | None = None
) -> list[str]:
    """Delete dead letters (a job id whose newest run is dead) matching every filter given, every run of those job
    ids with them; returns the job ids. Never touches a job id that has an active or later run."""
    rows = await db.fetch(
        """
        WITH dead AS (
            SELECT d.job_id FROM runtime.job_runs d
            WHERE d.state = 'dead'
              AND ($1::text[] IS NULL OR d.job_id = ANY($1::text[]))
              AND ($2::text IS NULL OR d.job_name = $2)
              AND ($3::timestamptz IS NULL OR d.finished_at < $3)
              AND NOT EXISTS (SELECT 1 FROM runtime.job_runs n WHERE n.job_id = d.job_id AND n.id > d.id)
        )
        DELETE FROM runtime.job_runs r USING dead WHERE r.job_id = dead.job_id
        RETURNING r.job_id
        """,
        job_ids,
        job_name,
        before,
    )
    return sorted({row["job_id"] for row in rows})


async def running_per_queue(db: Executor) -> dict[str, int]:
    rows = await db.fetch("SELECT queue, count(*) AS n FROM runtime.job_runs WHERE state = 'running' GROUP BY queue")
    return {r["queue"]: r["n"] for r in rows}


async def prune_finished(db: Executor, *, older_than_days: int) -> int:
    """Delete finished runs (succeeded and dead) older than the retention; active runs are never pruned."""
    status: str = await db.execute(
        """
        DELETE FROM runtime.job_runs
        WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(days => $1)
        """,
        older_than_days,
    )
    return int(status.split()[-1])
