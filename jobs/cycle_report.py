"""The cycle_report job: the end of a user's growth cycle — the report, its card, the reset; the chain's third step
(jobs/cycle.py: insight → proactive_prompts → cycle_report → projection), the one that closes the cycle.

`cycle_start` names the cycle (the user's `last_cycle_started_at`, or `created_at` in the first cycle); None means
the user's current cycle, so `run.py trigger cycle_report --arg user_id=…` reports and closes it by hand. A past
cycle can be reported too (a resumed report that died): it ends where the current one starts and resets nothing.

Idempotent because (DESIGN.md invariant 2): the report's id derives from the cycle and is inserted ON CONFLICT DO
NOTHING, with its card, in one transaction that also resets the cycle only while the locked user row's cycle is
still the reported one (store/cycle_report_writes.py). A rerun writes nothing and makes no LLM call. When the report
dies, the chain's dead policy closes the cycle without it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.cycle import Cycle, CycleWindow
from core.errors import PermanentError
from jobs.cycle import CycleArgs, StepResult, chain_step
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.sync import follow_commit
from jobs.user_locale import language_for
from store.cycle_report_writes import (
    CycleRows,
    CycleWindows,
    NewCycleReport,
    read_cycle_rows,
    report_exists,
    write_cycle_report,
)
from store.cycles import CycleState

if TYPE_CHECKING:
    from agents.cycle_report import CycleMaterial
    from agents.llm import LLMClient


def report_windows(current: Cycle, cycle: Cycle, now: datetime) -> tuple[CycleWindows, bool]:
    """The reported cycle's windows and whether it is the user's current cycle (then it ends now and is reset).

    A past cycle (the user's cycle has moved on) ends where the current one starts; the previous cycle is taken as
    the same length just before the reported one."""
    is_current = cycle == current
    if not is_current and cycle.start > current.start:
        raise PermanentError(
            f"cycle {cycle.stamp} starts after the user's current cycle ({current.stamp}); "
            "trigger without cycle_start to report the current cycle"
        )
    window = CycleWindow.of(cycle, now if is_current else current.start)  # what belongs to it: core/cycle.py
    length = max(window.end - window.start, timedelta(seconds=1))
    return CycleWindows(previous_start=window.start - length, start=window.start, end=window.end), is_current


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


async def run_cycle_report(ctx: JobContext, args: CycleArgs, cycle: Cycle, state: CycleState) -> StepResult:
    """Read the cycle → report (one LLM call, none for an empty cycle) → write once and reset; the chain goes on
    with the projection.

    The agent is imported here, not at the top: listing jobs or probing health must not load the LLM client."""
    from agents.cycle_report import CycleReportAgent

    now = datetime.now(UTC)
    windows, current = report_windows(state.cycle, cycle, now)
    if await report_exists(ctx.pool, cycle):
        return StepResult({"outcome": "already_written", "llm_calls": 0})
    rows = await read_cycle_rows(ctx.pool, cycle.user_id, windows)
    material = cycle_material(cycle.user_id, state.name, windows, rows)
    material.language = language_for(ctx.log, cycle.user_id, state.language_preference)
    llm: LLMClient | None = None
    if not material.is_empty:
        llm = await ctx.resource(LLM)
    report = await CycleReportAgent.from_settings(llm, ctx.settings).run(material, job_id=ctx.job_id)
    summary = await write_cycle_report(
        ctx.pool,
        NewCycleReport(
            cycle=cycle,
            title=report.title,
            narrative=report.narrative,
            content_data=report.content_data,
            with_card=not report.empty,
        ),
        reset_at=now if current else None,
    )
    if summary.outcome == "written":
        await follow_commit(ctx)  # the graph and vector stores catch up with the report
    result: dict[str, Any] = {**summary.as_dict(), "empty": report.empty, "llm_calls": report.usage.calls}
    ctx.log.info("cycle_report.done", cycle=cycle.stamp, **result)
    return StepResult(result)


CYCLE_REPORT = chain_step(
    "cycle_report",
    run_cycle_report,
    timeout_s=300,
    max_tries=5,
    backoff_s=30,
    resources=(LLM,),
    description=(
        "Write a user's cycle report (narrative, growth per dimension vs the previous cycle, top concepts, highlights,"
        " counts) and its card, and start the next cycle; the chain's third step, then the projection.\n"
        "In the chain as cycle_report:{user_id}:{cycle}; `--arg user_id=…` reports and closes the user's current cycle"
        " by hand. An empty cycle gets a minimal report, no card, no LLM call; a dead report closes the cycle without."
    ),
)
