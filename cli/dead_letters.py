"""`jobs failed`, `jobs retry` and `jobs purge`: the dead-letter list, reviving one, and clearing what was dealt with.

Dead letters live in the ledger (runtime.job_runs, state `dead`); the few whose text Postgres refuses even escaped
are kept in Redis instead (jobs/runtime/queue.py, `unrecorded_dead`) and are listed and purged with the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from cli.common import CommandError, console, fail, hint, print_json, run_async
from cli.job_args import ArgumentParseError, parse_duration
from cli.runs import checked_id, checked_job_name, connections, iso, run_json
from cli.tables import Col, show
from cli.trigger import report_enqueue
from jobs.catalog import JOBS
from jobs.runtime import queue as redis_queue
from jobs.runtime.enqueue import EnqueueResult, JobArgumentsError, NotRetryableError, retry_dead
from jobs.runtime.queue import UNRECORDED_DEAD_KEY, UnrecordedDead
from jobs.runtime.registry import UnknownJobError
from store import ledger
from store.ledger import JobRun


def _kept_json(kept: UnrecordedDead) -> dict[str, Any]:
    return {**kept.entry, "job_name": kept.job_name, "in_ledger": False}


def failed_command(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="At most this many dead letters."),
    job: str | None = typer.Option(None, "--job", help="Only this job name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, arguments included."),
) -> None:
    """Dead letters, newest first (a job retried since is no longer listed): job id, job, tries, when, error.

    Also those the ledger could not hold (a record with text Postgres refuses even escaped), kept in Redis under
    orrery:dead:unrecorded: listed after the table, and with `"in_ledger": false` in --json.

    Examples:

    \b
      run.py jobs failed
      run.py jobs failed --job ingest --json
    """
    job = checked_id(job, "--job") if job is not None else None

    async def _run() -> tuple[list[JobRun], list[UnrecordedDead]]:
        async with connections() as (conn, client):
            name = await checked_job_name(conn, job)
            runs = await ledger.dead_letters(conn, limit=limit, job_name=name)
            kept = await redis_queue.unrecorded_dead(client, limit)
        return runs, [entry for entry in kept if job is None or entry.job_name == job]

    runs, unrecorded = run_async(_run())
    if as_json:
        print_json([{**run_json(r), "in_ledger": True} for r in runs] + [_kept_json(k) for k in unrecorded])
        return
    if unrecorded:
        console.print(
            f"{len(unrecorded)} dead letter(s) the ledger could not hold, kept in Redis ({UNRECORDED_DEAD_KEY}):"
        )
        for kept in unrecorded:
            entry = kept.entry
            console.print(
                f"  {entry.get('job_id')} ({kept.job_name or '?'}, {entry.get('queue') or '?'}) at "
                f"{entry.get('at') or '?'}: {entry.get('error_class')}: {entry.get('error')}",
                highlight=False,
                soft_wrap=True,
            )
    if not runs:
        console.print("no dead letters" + (" in the ledger" if unrecorded else ""))
        return
    columns = [Col("job id", key=True), Col("job", key=True), Col("tries", justify="right"), Col("finished")]
    show(console, columns, [(r.job_id, r.job_name, f"{r.attempt}/{r.max_tries}", iso(r.finished_at)) for r in runs])
    for run in runs:  # whole, below the table: an error is read and searched for, not folded into a column
        console.print(f"{run.job_id}: {run.error_class}: {run.error}", highlight=False, soft_wrap=True)
    hint(
        "revive one with `run.py jobs retry JOB_ID`; see it in full with `run.py jobs show JOB_ID`; "
        "clear handled ones with `run.py jobs purge`"
    )


def retry_command(
    job_id: str = typer.Argument(..., help="The id of a dead job (see `jobs failed`)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Re-enqueue a dead job with the same name, arguments, queue and id (the ledger keeps the dead run).

    Example: run.py jobs retry ingest:c_123"""
    job_id = checked_id(job_id, "JOB_ID")

    async def _run() -> EnqueueResult:
        async with connections() as (conn, client):
            try:
                return await retry_dead(client, conn, JOBS, job_id)
            except (NotRetryableError, UnknownJobError, JobArgumentsError) as exc:
                raise CommandError(str(exc)) from None

    report_enqueue(run_async(_run()), as_json)


def purge_command(
    job_ids: list[str] = typer.Argument(None, help="Dead letters to delete, by job id."),
    job: str | None = typer.Option(None, "--job", help="Every dead letter of this job name."),
    older_than: str | None = typer.Option(None, "--older-than", help="Only those dead for longer: 12h, 7d."),
    everything: bool = typer.Option(False, "--all", help="Every dead letter (with --job / --older-than: all those)."),
    yes: bool = typer.Option(False, "--yes", help="Delete; without it, only count what would be deleted."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Delete dead letters that were dealt with: by job id, by job name, by age, or all. A dry run unless --yes.

    A dead letter is a job id whose newest run is dead; its runs are deleted from the ledger (a job retried since
    is not a dead letter and is never touched), and matching entries kept in Redis are dropped too. Give job ids,
    --job, --older-than or --all (nothing given is an error, not "everything").

    Examples:

    \b
      run.py jobs purge ingest:c_123 ingest:c_456 --yes
      run.py jobs purge --job diag.echo --older-than 7d
      run.py jobs purge --all --yes
    """
    ids = [checked_id(job_id, "JOB_ID") for job_id in job_ids or []]
    job = checked_id(job, "--job") if job is not None else None
    if not (ids or job or older_than or everything):
        fail("say which dead letters to purge: job ids, --job NAME, --older-than 7d or --all")
    try:
        before = datetime.now(UTC) - parse_duration(older_than) if older_than is not None else None
    except ArgumentParseError as exc:
        fail(str(exc).replace("--in", "--older-than"))

    async def _run() -> tuple[list[str], list[UnrecordedDead]]:
        async with connections() as (conn, client):
            name = await checked_job_name(conn, job)
            kept = [
                entry
                for entry in await redis_queue.unrecorded_dead(client)
                if (not ids or entry.entry.get("job_id") in ids)
                and (name is None or entry.job_name == name)
                and before is None  # entries kept in Redis carry their time as text; an age filter keeps them
            ]
            async with conn.transaction():
                purged = await ledger.purge_dead(conn, job_ids=ids or None, job_name=name, before=before)
                if not yes:
                    raise _DryRun(purged, kept)
            await redis_queue.drop_unrecorded(client, kept)
            return purged, kept

    try:
        purged, kept = run_async(_run())
    except _DryRun as dry:
        purged, kept = dry.purged, dry.kept
    unknown = [job_id for job_id in ids if job_id not in purged]
    if as_json:
        print_json({"purged": purged, "redis_entries": len(kept), "not_dead_letters": unknown, "deleted": yes})
    else:
        verb = "purged" if yes else "would purge (add --yes)"
        console.print(f"{verb}: {len(purged)} dead letter(s)", highlight=False)
        for job_id in purged:
            console.print(f"  {job_id}", highlight=False, soft_wrap=True)
        if kept:
            console.print(f"and {len(kept)} kept in Redis ({UNRECORDED_DEAD_KEY})", highlight=False)
    if unknown:
        fail(f"not dead letters (unknown, retried since, or never dead): {', '.join(unknown)}")


class _DryRun(Exception):
    """Raised inside the purge's transaction on a dry run, so the rows counted are exactly the rows not deleted."""

    def __init__(self, purged: list[str], kept: list[UnrecordedDead]) -> None:
        super().__init__("dry run")
        self.purged = purged
        self.kept = kept
