"""The cycle_report job: the end of a user's growth cycle — the report, its card, the reset — then the projection.

Chain (all on the batch queue, job ids `<job>:{user_id}:{cycle_key}`): insight → proactive_prompts → cycle_report →
projection. `cycle_start` names the cycle (the user's `last_cycle_started_at`, or `created_at` in the first cycle);
None means the user's current cycle, so `run.py trigger cycle_report --arg user_id=…` reports and closes it by hand.

Idempotent because (DESIGN.md invariant 2): the report's id derives from the user and the cycle start and is
inserted ON CONFLICT DO NOTHING, with its card, in one transaction that also resets the cycle only while the locked
user row's cycle is still the reported one (store/cycle_report_writes.py). A rerun writes nothing and makes no LLM
call; it only enqueues the projection again, which is itself keyed by the cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.errors import PermanentError
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.sync import follow_commit
from store.cycle_report_writes import (
    CycleRows,
    CycleWindows,
    NewCycleReport,
    cycle_key,
    read_cycle_rows,
    read_cycle_user,
    report_exists,
    second,
    write_cycle_report,
)

if TYPE_CHECKING:
    from agents.cycle_report import CycleMaterial
    from agents.llm import LLMClient


def _utc(moment: datetime | None) -> datetime | None:
    """A cycle start without a zone is UTC (every timestamp Orrery stores is)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


CycleStart = Annotated[datetime | None, AfterValidator(_utc)]


class CycleArgs(BaseModel):
    """The arguments of every job of the cycle chain."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200, description="users.user_id")
    cycle_start: CycleStart = Field(None, description="The cycle, by its start; none = the user's current cycle")


def chain_job_id(job: str, user_id: str, cycle_start: datetime) -> str:
    """`<job>:{user_id}:{cycle_key}`: one run per user, cycle and step of the chain."""
    return f"{job}:{user_id}:{cycle_key(cycle_start)}"


def report_windows(current_start: datetime, cycle_start: datetime, now: datetime) -> tuple[CycleWindows, bool]:
    """The reported cycle's windows and whether it is the user's current cycle (then it ends now and is reset).

    A past cycle (the user's cycle has moved on) ends where the current one starts; the previous cycle is taken as
    the same length just before the reported one."""
    current = second(current_start) == second(cycle_start)
    if not current and second(cycle_start) > second(current_start):
        raise PermanentError(
            f"cycle {cycle_key(cycle_start)} starts after the user's current cycle ({cycle_key(current_start)}); "
            "trigger without cycle_start to report the current cycle"
        )
    end = now if current else current_start
    length = max(end - cycle_start, timedelta(seconds=1))
    return CycleWindows(previous_start=cycle_start - length, start=cycle_start, end=end), current


def cycle_material(user_id: str, name: str | None, windows: CycleWindows, rows: CycleRows) -> CycleMaterial:
    """The agent's input from the store's rows."""
    from agents.cycle_report import CycleInsight, CycleMaterial, GrowthSums, Highlight, TopConcept

    return CycleMaterial(
        user_id=user_id,
        user_name=name,
        previous_start=windows.previous_start,
        cycle_start=windows.start,
        cycle_end=windows.end,
        growth={
            dim: GrowthSums(this_cycle=s.this_cycle, previous_cycle=s.previous_cycle, events=s.events)
            for dim, s in rows.growth.items()
        },
        counts=rows.counts,
        top_concepts=[TopConcept(**row) for row in rows.top_concepts],
        highlights=[
            Highlight(
                memory_unit_id=r["muid"], title=r["title"], content=r["content"], importance=r["importance_score"]
            )
            for r in rows.highlights
        ],
        insights=[
            CycleInsight(
                artifact_id=r["artifact_id"],
                artifact_type=r["artifact_type"],
                title=r["title"],
                narrative=r["content_narrative"],
            )
            for r in rows.insights
        ],
    )


async def run_cycle_report(ctx: JobContext, args: CycleArgs) -> Mapping[str, Any]:
    """Read the cycle → report (one LLM call, none for an empty cycle) → write once and reset → enqueue projection.

    The agent is imported here, not at the top: listing jobs or probing health must not load the LLM client."""
    from agents.cycle_report import CycleReportAgent

    ctx.bind(user_id=args.user_id)
    user = await read_cycle_user(ctx.pool, args.user_id)
    if user is None:
        raise PermanentError(f"user {args.user_id} does not exist; no cycle to report")
    cycle_start = args.cycle_start or user.cycle_start
    now = datetime.now(UTC)
    windows, current = report_windows(user.cycle_start, cycle_start, now)
    existing = await report_exists(ctx.pool, args.user_id, cycle_start)
    result: dict[str, Any]
    if existing:
        result = {"outcome": "already_written", "llm_calls": 0}
    else:
        rows = await read_cycle_rows(ctx.pool, args.user_id, windows)
        material = cycle_material(args.user_id, user.name, windows, rows)
        llm: LLMClient | None = None
        if not material.is_empty:
            llm = await ctx.resource(LLM)
        report = await CycleReportAgent.from_settings(llm, ctx.settings).run(material, job_id=ctx.job_id)
        summary = await write_cycle_report(
            ctx.pool,
            NewCycleReport(
                user_id=args.user_id,
                cycle_start=cycle_start,
                title=report.title,
                narrative=report.narrative,
                content_data=report.content_data,
                with_card=not report.empty,
            ),
            reset_at=now if current else None,
        )
        if summary.outcome == "written":
            await follow_commit(ctx)  # the graph and vector stores catch up with the report
        result = {**summary.as_dict(), "empty": report.empty, "llm_calls": report.usage.calls}
    await ctx.enqueue(
        "projection",
        {"user_id": args.user_id, "cycle_start": cycle_start},
        job_id=chain_job_id("projection", args.user_id, cycle_start),
    )
    ctx.log.info("cycle_report.done", cycle=cycle_key(cycle_start), **result)
    return {"cycle": cycle_key(cycle_start), **result}


CYCLE_REPORT = JobSpec(
    name="cycle_report",
    args_model=CycleArgs,
    handler=run_cycle_report,
    queue=BATCH,
    timeout_s=300,
    max_tries=5,
    backoff_s=30,
    dedupe_key=None,
    cron=None,
    resources=(LLM,),
    description=(
        "Write a user's cycle report (narrative, growth per dimension vs the previous cycle, top concepts, highlights,"
        " counts) and its card, start the next cycle, enqueue the projection.\n"
        "Enqueued by proactive_prompts with job id cycle_report:{user_id}:{cycle_key}; `--arg user_id=…` reports and"
        " closes the user's current cycle by hand. An empty cycle gets a minimal report, no card, no LLM call."
    ),
)
