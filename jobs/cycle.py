"""The growth cycle as one workflow: its steps declared once, one identity, one way to advance, one dead policy.

A user's cycle (core/cycle.py names it) is closed by a chain of jobs on the batch queue, declared once in CHAIN:

    insight → proactive_prompts → cycle_report (closes the cycle) → projection

Every step is a JobSpec built by `chain_step`, which gives it what the chain owns, so a new step cannot leave any
of it out:
- **one identity**: a step runs under one job id per cycle, `{step}:{user_id}:{stamp}` (Cycle.job_id), however it
  is started (the dispatcher, the step before it, `run.py trigger STEP --arg user_id=U`, `run.py cycle resume`,
  `jobs retry`): `enqueue` names the user's current cycle through the step's JobIdentity when the arguments leave
  it out, and a run that arrives under another id (a producer that wrote the record itself) hands over to the
  cycle's own id instead of paying for the work a second time.
- **one way to advance**: when a step's work is done, `advance` enqueues the first later step whose run for this
  cycle has not finished. A step queued or running is left to the enqueue's dedupe; one that died is passed over,
  unless it died before this run was enqueued (an operator resumed an earlier step: the chain redoes what died
  after it).
- **one dead policy**: the chain goes on without a step that died (its dead hook advances past it), and a cycle
  whose closing step died is closed without its report, so whatever step dies, the user's next cycle still comes.
  The dead run stays in the dead letters; `run.py cycle resume USER` runs it again.

The hourly dispatcher (jobs/cycle_dispatch.py) starts due cycles with the same plan (`next_step`), finishes any
whose dead hook never ran, and revives the dead steps CHAIN marks as worth it (the projection), a bounded number of
times. `run.py cycle show USER` reads a user's cycles through `cycle_history`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import redis.asyncio as aioredis
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.cycle import Cycle, cycle_due_at
from core.errors import PermanentError
from core.local_time import user_zone
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import EnqueueResult, enqueue
from jobs.runtime.registry import BATCH, JobIdentity, JobSpec, JobTable
from jobs.runtime.resources import Resource
from store import ledger
from store.cycles import CycleState, close_cycle, read_cycle
from store.ledger import JobRun, RunState
from store.postgres import Executor


@dataclass(frozen=True)
class Step:
    """One step of the chain, by job name."""

    name: str
    closes_cycle: bool = False
    """Its work starts the user's next cycle; when it dies, the dead policy closes the cycle without it."""
    revivals: int = 0
    """How often the dispatcher enqueues a dead run of this step again (0: never). For a step whose work does not
    need the cycle to be open and whose deaths come from outages, so trying later is worth it: the projection."""


CHAIN: tuple[Step, ...] = (
    Step("insight"),
    Step("proactive_prompts"),
    Step("cycle_report", closes_cycle=True),
    Step("projection", revivals=2),
)
STEPS: tuple[str, ...] = tuple(step.name for step in CHAIN)


def step_named(name: str) -> Step:
    for step in CHAIN:
        if step.name == name:
            return step
    raise ValueError(f"{name!r} is not a step of the cycle chain ({' → '.join(STEPS)})")


# --- the plan: pure functions of the steps' newest runs ------------------------------------------------------------


def next_step(
    states: Mapping[str, RunState], *, after: str | None = None, rerun_dead: Collection[str] = ()
) -> str | None:
    """The step to enqueue for a cycle whose steps' newest runs are in `states` (by step name; a step missing from
    it never ran): the first step after `after` (from the first when None) that has not finished, None when every
    one has. A dead step counts as finished (the dead policy goes on without it, and what died is not paid for
    again) unless it is in `rerun_dead`: an operator's resume, or an earlier step run again after it died."""
    later = STEPS[STEPS.index(after) + 1 :] if after is not None else STEPS

    def finished(name: str) -> bool:
        state = states.get(name)
        return state == "succeeded" or (state == "dead" and name not in rerun_dead)

    return next((name for name in later if not finished(name)), None)


def closing_step_died(states: Mapping[str, RunState]) -> bool:
    """Whether the step that closes the cycle died (then the cycle is closed without it)."""
    return any(states.get(step.name) == "dead" for step in CHAIN if step.closes_cycle)


async def step_runs(db: Executor, cycle: Cycle) -> dict[str, JobRun]:
    """Each step's newest run for this cycle, by step name (one statement; a step that never ran is left out)."""
    runs = await ledger.latest_runs(db, [cycle.job_id(step) for step in STEPS])
    return {step: runs[cycle.job_id(step)] for step in STEPS if cycle.job_id(step) in runs}


def died_before(runs: Mapping[str, JobRun], moment: datetime) -> set[str]:
    """The steps whose newest run died before `moment`."""
    return {step for step, run in runs.items() if run.state == "dead" and run.finished_at and run.finished_at < moment}


# --- the arguments and the identity -------------------------------------------------------------------------------


def _utc(moment: datetime | None) -> datetime | None:
    """A cycle start without a zone is UTC (every timestamp Orrery stores is)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


CycleStart = Annotated[datetime | None, AfterValidator(_utc)]


class CycleArgs(BaseModel):
    """The arguments of every step of the chain."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200, description="users.user_id")
    cycle_start: CycleStart = Field(None, description="The cycle, by its start; none = the user's current cycle")

    @property
    def in_chain(self) -> bool:
        """Whether this run is a step of a cycle (proactive_prompts also has daily runs, which are not)."""
        return True

    def outside_chain_job_id(self) -> str:
        """The job id of a run outside the chain (a step that has such runs says how they are named)."""
        raise NotImplementedError(f"{type(self).__name__} has no runs outside the cycle chain")


def step_args(cycle: Cycle) -> dict[str, Any]:
    return {"user_id": cycle.user_id, "cycle_start": cycle.start}


async def _read_cycle(db: Executor, user_id: str) -> CycleState | None:
    if "\x00" in user_id:
        return None  # Postgres cannot hold it, so no user has this id (and asking would raise)
    return await read_cycle(db, user_id)


@dataclass(frozen=True)
class _NameTheCycle:
    """A step's JobIdentity.resolve (a class, not a closure: `worker --processes` pickles the job table): the
    user's current cycle when the arguments leave it out, and the step's one id for that cycle."""

    step: str

    async def __call__(self, db: Executor, args: CycleArgs) -> tuple[CycleArgs, str]:
        if not args.in_chain:
            return args, args.outside_chain_job_id()
        if args.cycle_start is None:
            state = await _read_cycle(db, args.user_id)
            if state is None:
                raise ValueError(f"no user {args.user_id!r}; a step of the cycle chain runs for an existing user")
            args = args.model_copy(update={"cycle_start": state.cycle.start})
        assert args.cycle_start is not None
        return args, Cycle.of(args.user_id, args.cycle_start).job_id(self.step)


# --- advancing ----------------------------------------------------------------------------------------------------


async def enqueue_step(ctx: JobContext, cycle: Cycle, step: str) -> EnqueueResult | None:
    """Enqueue `step` for `cycle` under its one id (a no-op while it is queued or running); None when this worker's
    job table does not know the step (logged: the chain stops here, as in a test's reduced table)."""
    if ctx.resources.jobs is None or step not in ctx.resources.jobs:
        ctx.log.warning("cycle.chain_stops", next_job=step, reason="no such job in this worker's table")
        return None
    return await ctx.enqueue(step, step_args(cycle), job_id=cycle.job_id(step))


async def advance(ctx: JobContext, cycle: Cycle, *, after: str) -> str | None:
    """The chain's one way on: enqueue the first step after `after` whose run for this cycle has not finished;
    returns its job id, None when every later step has finished.

    A later step that died counts as finished, unless it died before this run of `after` was enqueued: then this
    run is an earlier step run again on purpose (`cycle resume`, a manual trigger), and the chain redoes what died
    after it. A later step that died since (a duplicate delivery of this run, taken over after a kill) stays dead:
    a rerun never pays for a dead step again."""
    runs = await step_runs(ctx.pool, cycle)
    this_run = await ledger.latest_run(ctx.pool, ctx.job_id)
    rerun = died_before(runs, this_run.enqueued_at) if this_run is not None else set()
    step = next_step({name: run.state for name, run in runs.items()}, after=after, rerun_dead=rerun)
    queued = await enqueue_step(ctx, cycle, step) if step is not None else None
    return queued.job_id if queued is not None else None


# --- a step -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """What a step's work returns: the summary for the ledger, and whether the chain goes on (a step that finds
    its cycle closed by someone else leaves the rest to them)."""

    summary: Mapping[str, Any]
    go_on: bool = True


StepWork = Callable[[JobContext, Any, Cycle, CycleState], Awaitable[StepResult]]
"""work(ctx, args, cycle, state): the step for `cycle` (the one asked for); `state` is where the user's cycle
stands now."""
OutsideWork = Callable[[JobContext, Any, CycleState], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class _RunStep:
    """A step's handler (see chain_step; a class so that the job table pickles)."""

    step: Step
    work: StepWork
    outside_chain: OutsideWork | None

    async def __call__(self, ctx: JobContext, args: CycleArgs) -> Mapping[str, Any]:
        name = self.step.name
        ctx.bind(user_id=args.user_id)
        state = await _read_cycle(ctx.pool, args.user_id)
        if state is None:
            raise PermanentError(f"user {args.user_id} does not exist; no cycle to run {name} for")
        if not args.in_chain:
            if self.outside_chain is None:
                raise PermanentError(f"job {name}: these arguments name no cycle")
            return await self.outside_chain(ctx, args, state)
        cycle = Cycle.of(args.user_id, args.cycle_start) if args.cycle_start is not None else state.cycle
        own_id = cycle.job_id(name)
        if ctx.job_id != own_id:  # one identity: the cycle's own run does the work (and pays for it) once
            await ctx.enqueue(name, step_args(cycle), job_id=own_id)
            ctx.log.info("cycle.handed_over", job_id=own_id)
            return {"cycle": cycle.stamp, "outcome": "handed_over", "job_id": own_id}
        result = await self.work(ctx, args, cycle, state)
        summary = {"cycle": cycle.stamp, **result.summary}
        if result.go_on:
            summary["next_job_id"] = await advance(ctx, cycle, after=name)
        return summary


@dataclass(frozen=True)
class _StepDied:
    """A step's on_dead hook: the chain's dead policy, `step_died` (a class so that the job table pickles)."""

    step: Step

    async def __call__(self, ctx: JobContext, args: CycleArgs, reason: str) -> None:
        await step_died(ctx, self.step, args, reason)


def chain_step(
    name: str,
    work: StepWork,
    *,
    timeout_s: float,
    max_tries: int,
    backoff_s: float,
    description: str,
    resources: tuple[Resource[Any], ...] = (),
    args_model: type[CycleArgs] = CycleArgs,
    outside_chain: OutsideWork | None = None,
) -> JobSpec:
    """The JobSpec of chain step `name`, with what the chain owns: its identity, its handler (resolve the cycle →
    hand over to the cycle's own job id if run under another → work → advance) and the dead policy. `work` and
    `outside_chain` must be module-level functions (the job table is pickled); `outside_chain` runs the step's runs
    that belong to no cycle (args.in_chain False)."""
    step = step_named(name)
    return JobSpec(
        name=name,
        args_model=args_model,
        handler=_RunStep(step, work, outside_chain),
        queue=BATCH,
        timeout_s=timeout_s,
        max_tries=max_tries,
        backoff_s=backoff_s,
        dedupe_key=None,
        cron=None,
        on_dead=_StepDied(step),
        resources=resources,
        identity=JobIdentity(pattern=f"{name}:{{user_id}}:{{cycle}}", resolve=_NameTheCycle(name)),
        description=description,
    )


async def step_died(ctx: JobContext, step: Step, args: CycleArgs, reason: str) -> None:
    """The chain's one dead policy: the cycle goes on without the dead step, and a cycle whose closing step died is
    closed without it, so the user's next cycle still comes. Nothing of the dead run was written (each step writes
    in one transaction); it stays a dead letter with its reason for `run.py cycle resume`."""
    if not args.in_chain:
        return
    state = await _read_cycle(ctx.pool, args.user_id)
    if state is None:
        return  # no such user: no cycle to go on with
    cycle = Cycle.of(args.user_id, args.cycle_start) if args.cycle_start is not None else state.cycle
    closed = step.closes_cycle and await close_cycle(ctx.pool, cycle, datetime.now(UTC))
    next_job_id = await advance(ctx, cycle, after=step.name)
    ctx.log.warning("cycle.step_dead", step=step.name, cycle=cycle.stamp, closed=closed, next_job_id=next_job_id)


# --- what an operator sees and resumes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleStatus:
    """One cycle of a user: each step's newest run (None: it never ran, or the ledger pruned it)."""

    cycle: Cycle
    current: bool
    runs: Mapping[str, JobRun | None]

    @property
    def states(self) -> dict[str, RunState]:
        return {step: run.state for step, run in self.runs.items() if run is not None}


@dataclass(frozen=True)
class CycleHistory:
    state: CycleState
    due_at: datetime
    """When the current cycle is due (the dispatcher starts its chain from then on)."""
    cycles: Sequence[CycleStatus]
    """The current cycle first, then the recent ones the ledger knows, newest first."""


def _cycle_of_run(run: JobRun) -> Cycle | None:
    start = run.args.get("cycle_start")
    try:
        return Cycle.of(run.args["user_id"], datetime.fromisoformat(start)) if isinstance(start, str) else None
    except (KeyError, TypeError, ValueError):
        return None  # a record written by another producer; its cycle is not readable


async def cycle_history(
    db: Executor, user_id: str, *, recent: int, length_days: float, stamp: str | None = None
) -> CycleHistory | None:
    """The user's current cycle and up to `recent` earlier ones found in the ledger (and the cycle named `stamp`,
    however old), newest first, each with its steps' newest runs; None when there is no such user. A `stamp` that
    is not a cycle stamp, or names a cycle after the current one, is a ValueError."""
    state = await _read_cycle(db, user_id)
    if state is None:
        return None
    asked = Cycle.from_stamp(user_id, stamp) if stamp is not None else None
    if asked is not None and asked.start > state.cycle.start:
        raise ValueError(f"cycle {asked.stamp} starts after the user's current cycle ({state.cycle.stamp})")
    runs = await ledger.runs_naming_user(db, user_id, list(STEPS), limit=(recent + 1) * len(STEPS) * 3)
    earlier = {c for c in map(_cycle_of_run, runs) if c is not None and c.start < state.cycle.start}
    cycles = [state.cycle, *sorted(earlier, key=lambda c: c.start, reverse=True)[:recent]]
    if asked is not None and asked not in cycles:
        cycles.append(asked)
    latest = await ledger.latest_runs(db, [c.job_id(step) for c in cycles for step in STEPS])
    return CycleHistory(
        state=state,
        due_at=cycle_due_at(state.cycle.start, length_days, user_zone(state.timezone).zone),
        cycles=[CycleStatus(c, c == state.cycle, {step: latest.get(c.job_id(step)) for step in STEPS}) for c in cycles],
    )


def to_resume(history: CycleHistory, now: datetime, stamp: str | None = None) -> tuple[CycleStatus, str] | None:
    """What `cycle resume` runs: the first step that has not succeeded of the cycle named `stamp`, else of the
    newest cycle that has one, counting the current cycle only once it has runs or is due (before that, nothing of
    it is late). None when there is nothing to resume."""
    for status in history.cycles:
        if stamp is not None and status.cycle.stamp != stamp:
            continue
        started = stamp is not None or bool(status.states) or (status.current and now >= history.due_at)
        step = next_step(status.states, rerun_dead=STEPS)
        if started and step is not None:
            return status, step
    return None


async def resume_step(redis: aioredis.Redis, db: Executor, jobs: JobTable, cycle: Cycle, step: str) -> EnqueueResult:
    """Enqueue `step` of `cycle` under its one id, as the chain would (a no-op while it is queued or running); once
    it succeeds, the chain goes on from there and runs again what died after it."""
    return await enqueue(redis, db, jobs.get(step), step_args(cycle), job_id=cycle.job_id(step))
