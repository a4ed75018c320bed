"""The insight job: one user's growth cycle → the updated picture of them, written once; the first step of the
cycle chain (jobs/cycle.py owns the chain: identity, advance, dead policy).

Load the cycle's material (bounded: store/insight_material.py) → detect communities on the concept graph (Louvain,
seeded) → one LLM call (agents/insight) → one transaction (store/insight_writes.py); the chain then goes on with
proactive_prompts. Idempotent because (DESIGN.md invariant 2): the write is gated on the locked user row (the cycle
must still be current, its insight_summary must not exist), every row it writes has a deterministic id, and a cycle
already written is seen before the LLM call, so a rerun costs no call. An empty cycle (fewer than
ORRERY_CYCLE_MIN_CONVERSATIONS conversations that left memory) makes no call and writes nothing, and the chain
still goes on, so the report is written and the cycle advances.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.cycle import Cycle, CycleWindow
from jobs.cycle import CycleArgs, StepResult, chain_step
from jobs.grounding import recall_history, recalled_for
from jobs.resources import EMBEDDER, LLM, VECTOR
from jobs.runtime.context import JobContext
from jobs.sync import follow_commit
from jobs.user_locale import language_for
from store.cycles import CycleState
from store.postgres import Executor

if TYPE_CHECKING:
    from agents.insight import InsightInput
    from core.insight import EarlierMemory, InsightMaterial

NEIGHBOURS = 30
"""Concepts shown besides the cycle's own: their strongest neighbours in the graph, where a duplicate to merge
usually is."""
EARLIER_MEMORIES = 8
"""Memory units from before the cycle recalled for its themes (the view's token budget may show fewer)."""
GOALS_TRACED, GOAL_BEGINNINGS = 3, 2
"""The cycle's goals without a story (those it marks a milestone of first, then the most mentioned) whose first
memory units are shown besides, so a goal reached this cycle can be told from its beginning: at most 3 x 2 memory
units, before the recalled ones."""


async def run_insight(ctx: JobContext, args: CycleArgs, cycle: Cycle, state: CycleState) -> StepResult:
    """Close the insight part of a cycle; see the module docstring. Agents are imported inside, not at the top, so
    listing jobs or probing health loads no LLM client and no networkx."""
    if cycle != state.cycle:
        ctx.log.info("insight.skipped", reason="not the user's current cycle", current=state.cycle.stamp)
        return StepResult({"outcome": "not_current_cycle"}, go_on=False)
    outcome, details = await _insight(ctx, state)
    return StepResult({"outcome": outcome, **details}, go_on=outcome != "not_current_cycle")


async def _insight(ctx: JobContext, state: CycleState) -> tuple[str, dict[str, Any]]:
    from agents.insight import InsightAgent
    from core.insight import InsightStatus
    from store.insight_material import insight_written, load_insight_material
    from store.insight_writes import write_insight

    settings, pool = ctx.settings, ctx.pool
    if await insight_written(pool, state.cycle):
        return "already_written", {}
    window = CycleWindow.of(state.cycle, datetime.now(UTC))  # what the cycle learned: core/cycle.py
    material = await load_insight_material(
        pool,
        state.cycle,
        window_start=window.start,
        window_end=window.end,
        importance_threshold=settings.insight_importance_threshold,
    )
    if material.is_empty(settings.cycle_min_conversations):
        ctx.log.info("insight.empty_cycle", conversations=material.active_conversations)
        return "empty_cycle", {"conversations": material.active_conversations}

    data = replace(await insight_input(pool, material), earlier=await earlier_memories(ctx, material))
    data = replace(data, language=language_for(ctx.log, state.user_id, state.language_preference))
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


async def earlier_memories(ctx: JobContext, material: InsightMaterial) -> tuple[EarlierMemory, ...]:
    """The first memory units of the cycle's goals (GOALS_TRACED), then those from the user's whole history that
    recall finds for the cycle's themes (its most mentioned concepts, else its most important memories), the cycle's
    own left out (jobs/grounding.py)."""
    from core.embedding_texts import concept_text, memory_unit_text
    from core.insight import EarlierMemory, MemoryDigest
    from core.vocabulary import is_goal_type
    from store.insight_material import load_goal_beginnings

    goals = {c.concept_id: c.name for c in material.concepts if is_goal_type(c.type) and not c.story_told}
    shown = {m.muid for m in material.memory_units}
    beginnings = await load_goal_beginnings(
        ctx.pool, material.user_id, list(goals), cycle_units=shown, goals=GOALS_TRACED, per_goal=GOAL_BEGINNINGS
    )
    first = {m.muid: EarlierMemory(memory=m, recalled_for=f"where the goal '{goals[g]}' began") for g, m in beginnings}
    themes = [(c.name, concept_text(c.name, c.type, c.description)) for c in material.concepts]
    themes = themes or [(m.title, memory_unit_text(m.title, m.content)) for m in material.memory_units]
    found = await recall_history(
        ctx,
        material.user_id,
        themes,
        agent="insight",
        limit=EARLIER_MEMORIES,
        exclude=shown | set(first),
    )
    return (
        *first.values(),
        *(
            EarlierMemory(
                memory=MemoryDigest(
                    muid=item.entity_id,
                    title=item.title,
                    content=item.text,
                    importance=item.importance,
                    sentiment=None,
                    creation_ts=item.at or material.window_start,
                    source_conversation_id=None,
                ),
                recalled_for=recalled_for(item),
            )
            for item in found
        ),
    )


INSIGHT = chain_step(
    "insight",
    run_insight,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    resources=(LLM, EMBEDDER, VECTOR),
    description=(
        "Close a user's growth cycle: memory profile, graph schema, insight artifacts, concept merges, communities.\n"
        "The chain's first step (insight:{user_id}:{cycle}), started by cycle_dispatch; `--arg user_id=…` closes the"
        " current cycle now. Continues the chain with proactive_prompts for the same cycle."
    ),
)
