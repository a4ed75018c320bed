"""The growth cycle: who is due, the chain that closes a cycle, and the hourly dispatcher that starts it.

A user's cycle starts at `users.last_cycle_started_at` (or `created_at` before their first one) and is due once
`ORRERY_CYCLE_LENGTH_DAYS` have passed. Closing it is a chain of jobs on the batch queue, each enqueuing the next
under a job id named after the cycle:

    cycle_dispatch (cron, hourly) → insight:{user}:{cycle} → proactive_prompts:{user}:{cycle}
        → cycle_report:{user}:{cycle} (resets the cycle) → projection:{user}:{cycle}

where {cycle} is the cycle start as compact UTC (20261119T000000Z). Every chain job takes `CycleArgs`
(jobs/cycle_report.py); without a `cycle_start` it runs the user's current cycle, so `run.py trigger insight
--arg user_id=…` closes a cycle by hand. Exactly once: the job ids deduplicate what is queued; each job's write is
gated on its cycle in its transaction; `continue_chain` does not enqueue a step whose run for the cycle already
finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.cycle_report import chain_job_id
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from store import ledger, sweeps

FINISHED = ("succeeded", "dead")


async def continue_chain(ctx: JobContext, next_job: str, user_id: str, cycle_start: datetime) -> str | None:
    """Make sure the next step of the chain runs for this cycle; returns its job id, or None when this worker does
    not know the job (it is logged, and the chain stops here).

    Enqueued by name with the same arguments unless its run for this cycle already finished: a rerun of this step
    (a crash after its write, a duplicate delivery, a manual trigger) must not run the next one twice, while a run
    still queued is left to the enqueue's dedupe, which also re-creates one Redis lost.
    """
    if ctx.resources.jobs is None or next_job not in ctx.resources.jobs:
        ctx.log.warning("cycle.chain_stops", next_job=next_job, reason="no such job in this worker's table")
        return None
    job_id = chain_job_id(next_job, user_id, cycle_start)
    run = await ledger.latest_run(ctx.pool, job_id)
    if run is None or run.state not in FINISHED:
        await ctx.enqueue(next_job, {"user_id": user_id, "cycle_start": cycle_start}, job_id=job_id)
    return job_id


class CycleDispatchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(1000, ge=1, le=100_000, description="Users whose cycle is started per run at most.")


async def dispatch_cycles(ctx: JobContext, args: CycleDispatchArgs) -> Mapping[str, Any]:
    """Enqueue `insight` for every user whose cycle is due (store.sweeps.users_due_for_cycle says which).

    Idempotent: each cycle's job id is `insight:{user_id}:{cycle}`, so a cycle already queued or running is not
    enqueued twice, and one whose insight finished is not returned by the query; the next hour picks up whatever
    the limit left."""
    from jobs.insight import INSIGHT

    due = await sweeps.users_due_for_cycle(
        ctx.pool, length_days=ctx.settings.cycle_length_days, job_prefix=f"{INSIGHT.name}:", limit=args.limit
    )
    enqueued = 0
    for user_id, cycle_start in due:
        job_id = chain_job_id(INSIGHT.name, user_id, cycle_start)
        result = await ctx.enqueue(INSIGHT, {"user_id": user_id, "cycle_start": cycle_start}, job_id=job_id)
        enqueued += result.enqueued
    if due:
        ctx.log.info("cycles dispatched", due=len(due), enqueued=enqueued)
    return {"due": len(due), "enqueued": enqueued, "already_queued": len(due) - enqueued}


CYCLE_DISPATCH = JobSpec(
    name="cycle_dispatch",
    args_model=CycleDispatchArgs,
    handler=dispatch_cycles,
    queue=BATCH,
    timeout_s=300,
    max_tries=1,  # the next hour's run is the retry
    backoff_s=0,
    dedupe_key="cycle_dispatch",
    cron="5 * * * *",
    description=(
        "Start the cycle chain (insight → proactive prompts → cycle report → projection) for every due user.\n"
        "A cycle is due ORRERY_CYCLE_LENGTH_DAYS after users.last_cycle_started_at (or created_at)."
    ),
)
