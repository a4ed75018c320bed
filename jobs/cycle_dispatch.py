"""The hourly cycle dispatcher: start every due cycle's chain, finish any the dead policy could not, and revive the
dead steps the chain marks as worth another try (jobs/cycle.py owns the workflow; this is its clock).

A cycle is due at the user's local midnight nearest ORRERY_CYCLE_LENGTH_DAYS after it started (users.timezone;
core/cycle.cycle_due_at: an unusable zone is UTC and one warning per user and process) and stays due until it is
closed, so a due cycle whose
chain is under way is seen again every hour: its plan (`next_step`, a dead step counting as done) then names the
step already queued or running, which is left alone, or enqueued again once its ledger row has been quiet for
QUIET (a no-op under its job id, or a re-creation of one Redis lost).
A cycle whose closing step died but whose dead hook never ran (a worker killed in between) is closed here, so no
user stays on a cycle for ever. Dead runs of a step with `revivals` (the projection, which a store or embedder
outage kills) are enqueued again, at most that many times per cycle, unless a later run of that step for the user has
succeeded since. The projection's refresh, its user-keyed trigger, is swept here too: a request still pending after
ten minutes (its enqueue lost, its refresh dead fewer than three times) is enqueued again (jobs/projection.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.cycle import Cycle, cycle_due_at
from jobs.cycle import CHAIN, STEPS, closing_step_died, enqueue_step, next_step
from jobs.projection import revive_refreshes
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.user_locale import zone_for
from store import ledger
from store.cycles import close_cycle, cycles_near_due

QUIET = timedelta(minutes=10)
"""A step queued or running whose ledger row has not moved for this long is enqueued again: a no-op while Redis holds
its job, a recovery when Redis lost it. One that moved more recently is left alone: the plan was read from a
snapshot, and enqueueing a step that finished since would start it again."""


class CycleDispatchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(1000, ge=1, le=100_000, description="Users whose cycle is started per run at most.")


async def dispatch_cycles(ctx: JobContext, args: CycleDispatchArgs) -> Mapping[str, Any]:
    """Start (or keep going) every due cycle, close those whose closing step died, revive dead projections and
    pending projection refreshes."""
    now = datetime.now(UTC)
    due = await due_cycles(ctx, now, limit=args.limit)
    runs = await ledger.latest_runs(ctx.pool, [cycle.job_id(step) for cycle in due for step in STEPS])
    enqueued = closed = 0
    for cycle in due:
        steps = {step: runs[cycle.job_id(step)] for step in STEPS if cycle.job_id(step) in runs}
        states = {step: run.state for step, run in steps.items()}
        if closing_step_died(states) and await close_cycle(ctx.pool, cycle, now):
            closed += 1
        step = next_step(states)
        if step is not None and (step not in steps or steps[step].updated_at < now - QUIET):
            queued = await enqueue_step(ctx, cycle, step)
            enqueued += queued is not None and queued.enqueued
    revived = await revive_dead_steps(ctx, now, limit=args.limit)
    refreshes = await revive_refreshes(ctx, now, limit=args.limit)
    if due or revived or refreshes:
        ctx.log.info(
            "cycles dispatched", due=len(due), enqueued=enqueued, closed=closed, revived=revived, refreshes=refreshes
        )
    return {"due": len(due), "enqueued": enqueued, "closed": closed, "revived": revived, "refreshes": refreshes}


async def due_cycles(ctx: JobContext, now: datetime, *, limit: int) -> list[Cycle]:
    """The cycles due at `now`, each at its user's local midnight (core/cycle.cycle_due_at), oldest first."""
    length = ctx.settings.cycle_length_days
    near = await cycles_near_due(ctx.pool, now=now, length_days=length, limit=limit)
    return [
        clock.cycle
        for clock in near
        if cycle_due_at(clock.cycle.start, length, zone_for(ctx.log, clock.cycle.user_id, clock.timezone)) <= now
    ]


async def revive_dead_steps(ctx: JobContext, now: datetime, *, limit: int) -> int:
    """Enqueue once more the dead runs of steps with `revivals`, for cycles that ended within one cycle length, while
    the user has nothing newer from that step; a step that died `revivals + 1` times stays dead."""
    revived = 0
    since = now - timedelta(days=ctx.settings.cycle_length_days)
    for step in (step for step in CHAIN if step.revivals > 0):
        runs = await ledger.dead_to_revive(
            ctx.pool, [step.name], died_since=since, below_dead_runs=step.revivals + 1, limit=limit
        )
        for run in runs:
            user_id = run.args.get("user_id")
            if not isinstance(user_id, str) or await _succeeded_since(ctx, user_id, step.name, run):
                continue
            result = await ctx.enqueue(step.name, run.args, job_id=run.job_id)
            revived += result.enqueued
    return revived


async def _succeeded_since(ctx: JobContext, user_id: str, step: str, dead: ledger.JobRun) -> bool:
    """Whether a later run of `step` for the user (another cycle's, or one triggered by hand) has succeeded since
    `dead` died: then it did what reviving would."""
    later = await ledger.runs_naming_user(ctx.pool, user_id, [step], limit=10)
    return any(run.state == "succeeded" and run.id > dead.id for run in later)


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
        "Start the cycle chain (insight → proactive prompts → cycle report → projection) for every due user,\n"
        "close a due cycle whose report died, enqueue a dead projection again (twice at most) and a pending\n"
        "projection refresh (below 3 deaths).\n"
        "A cycle is due at the user's local midnight (users.timezone, else UTC) nearest ORRERY_CYCLE_LENGTH_DAYS\n"
        "after users.last_cycle_started_at (or created_at)."
    ),
)
