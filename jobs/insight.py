"""The insight job: one user's growth cycle → the updated picture of them, written once, then the chain goes on.

Load the cycle's material (bounded: store/insight_material.py) → detect communities on the concept graph (Louvain,
seeded) → one LLM call (agents/insight) → one transaction (store/insight_writes.py) → enqueue `proactive_prompts`
for the same cycle (jobs/cycle.py has the chain). Idempotent because (DESIGN.md invariant 2): the write is gated
on the locked user row (the cycle must still be current, its insight_summary must not exist), every row it writes
has a deterministic id, and a cycle already written is seen before the LLM call, so a rerun costs no call. An empty
cycle (fewer than ORRERY_CYCLE_MIN_CONVERSATIONS conversations that left memory) makes no call and writes nothing,
and the chain still goes on, so the report is written and the cycle advances.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.errors import PermanentError
from core.insight import cycle_stamp
from jobs.cycle import continue_chain
from jobs.cycle_report import CycleArgs
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.sync import follow_commit
from store.cycle_report_writes import second
from store.insight_material import CycleState, read_cycle
from store.postgres import Executor

if TYPE_CHECKING:
    from agents.insight import InsightInput
    from core.insight import InsightMaterial

NEXT_JOB = "proactive_prompts"
NEIGHBOURS = 30
"""Concepts shown besides the cycle's own: their strongest neighbours in the graph, where a duplicate to merge
usually is."""


async def _current(ctx: JobContext, args: CycleArgs) -> tuple[CycleState | None, datetime | None]:
    """The user's cycle and the one asked for (None when it is not the current one any more); cycles compare at the
    precision of their name, the second."""
    if "\x00" in args.user_id:
        return None, None  # Postgres cannot hold it, so no user has this id (and asking would raise)
    cycle = await read_cycle(ctx.pool, args.user_id)
    if cycle is None:
        return None, None
    wanted = args.cycle_start or cycle.cycle_start
    return cycle, cycle.cycle_start if second(wanted) == second(cycle.cycle_start) else None


async def run_insight(ctx: JobContext, args: CycleArgs) -> Mapping[str, Any]:
    """Close the insight part of a cycle; see the module docstring. Agents are imported here, not at the top, so
    listing jobs or probing health loads no LLM client and no networkx."""
    ctx.bind(user_id=args.user_id)
    cycle, start = await _current(ctx, args)
    if cycle is None:
        raise PermanentError(f"user {args.user_id} does not exist; no cycle to close")
    if start is None:
        ctx.log.info("insight.skipped", reason="not the user's current cycle", current=cycle_stamp(cycle.cycle_start))
        return {"cycle": cycle_stamp(args.cycle_start or cycle.cycle_start), "outcome": "not_current_cycle"}

    outcome, details = await _insight(ctx, cycle)
    if outcome != "not_current_cycle":
        details["next_job_id"] = await continue_chain(ctx, NEXT_JOB, cycle.user_id, start)
    return {"cycle": cycle_stamp(start), "outcome": outcome, **details}


async def _insight(ctx: JobContext, cycle: CycleState) -> tuple[str, dict[str, Any]]:
    from agents.insight import InsightAgent
    from core.insight import InsightStatus
    from store.insight_material import insight_written, load_insight_material
    from store.insight_writes import write_insight

    settings, pool, user_id = ctx.settings, ctx.pool, cycle.user_id
    if await insight_written(pool, user_id, cycle.cycle_start):
        return "already_written", {}
    now = datetime.now(UTC)
    material = await load_insight_material(
        pool,
        cycle,
        window_start=cycle.last_cycle_started_at or now - timedelta(days=settings.cycle_length_days),
        window_end=now,
        importance_threshold=settings.insight_importance_threshold,
    )
    if material.is_empty(settings.cycle_min_conversations):
        ctx.log.info("insight.empty_cycle", conversations=material.active_conversations)
        return "empty_cycle", {"conversations": material.active_conversations}

    data = await insight_input(pool, material)
    llm = await ctx.resource(LLM)
    result = await InsightAgent.from_settings(llm, settings).run(data, job_id=ctx.job_id)
    if result.status is InsightStatus.EMPTY:
        return "empty_cycle", {"conversations": material.active_conversations}
    summary = await write_insight(pool, result)
    await follow_commit(ctx)  # the graph and vector stores catch up with the merges, artifacts and communities
    ctx.log.info(
        "insight.done",
        outcome=summary.outcome,
        artifacts=summary.artifacts,
        concepts_merged=summary.concepts_merged,
        communities=summary.communities,
        llm_calls=result.llm_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    return summary.outcome, {
        **{k: v for k, v in summary.as_dict().items() if k not in ("cycle", "outcome")},
        "llm_calls": result.llm_calls,
        "prompt_tokens": result.prompt_tokens,
    }


async def insight_input(pool: Executor, material: InsightMaterial) -> InsightInput:
    """The agent's input: the cycle's material plus what the user's whole concept graph says about it (the cycle
    concepts' strongest neighbours, each concept's degree, the communities Louvain finds, matched to the existing
    ones). The one part of the job whose cost grows with the history, by nature (bench/bench_insight.py)."""
    from agents.insight import (
        DETECTION_METHOD,
        MEMBERS_SHOWN,
        InsightInput,
        best_connected,
        community_candidates,
        detect_communities,
        neighbour_counts,
        strongest_neighbours,
    )
    from store.insight_material import concept_names, load_communities, load_concept_graph, load_concepts

    user_id = material.user_id
    links = await load_concept_graph(pool, user_id)
    near = strongest_neighbours(links, [c.concept_id for c in material.concepts], NEIGHBOURS)
    if near:
        more = await load_concepts(pool, user_id, near)
        material = material.model_copy(update={"concepts": (*material.concepts, *more)})
    found = detect_communities(links)
    degrees = neighbour_counts(links)
    named = {c for group in found for c in best_connected(group, degrees, MEMBERS_SHOWN)}
    candidates = community_candidates(
        found,
        await load_communities(pool, user_id),
        degrees,
        await concept_names(pool, user_id, sorted(named)),
        members_shown=MEMBERS_SHOWN,
    )
    return InsightInput(material, candidates, degrees, DETECTION_METHOD)


async def continue_when_dead(ctx: JobContext, args: CycleArgs, reason: str) -> None:
    """What a dead insight means: the cycle goes on without it. The chain's next step is enqueued, so the user still
    gets their report and a new cycle starts; this cycle's insight stays a dead letter with its reason (nothing was
    written: the write is one transaction). Without this, one bad answer would hold the user's cycle for ever."""
    cycle, start = await _current(ctx, args)
    if cycle is None or start is None:
        return  # no such user, or the cycle is closed already
    next_job_id = await continue_chain(ctx, NEXT_JOB, cycle.user_id, start)
    ctx.log.warning("insight.dead", user_id=cycle.user_id, cycle=cycle_stamp(start), next_job_id=next_job_id)


INSIGHT = JobSpec(
    name="insight",
    args_model=CycleArgs,
    handler=run_insight,
    queue=BATCH,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    dedupe_key="insight:{user_id}",
    cron=None,
    on_dead=continue_when_dead,
    resources=(LLM,),
    description=(
        "Close a user's growth cycle: memory profile, graph schema, insight artifacts, concept merges, communities.\n"
        "Enqueued by cycle_dispatch as insight:{user_id}:{cycle}; `--arg user_id=…` closes the current cycle now.\n"
        "Continues the chain with proactive_prompts for the same cycle."
    ),
)
