"""The proactive_prompts job: a few prompts the companion may bring up, from the user's recent material.

Two ways in. As the second step of the cycle chain (jobs/cycle.py: insight → proactive_prompts → cycle_report →
projection) it runs for a cycle (`cycle_start`, none = the user's current one), and the chain goes on with
cycle_report. On its own schedule, the hourly `proactive_prompts_daily` job enqueues a run keyed by the user's local
day (`daily`, job id `proactive_prompts:{user_id}:daily:{YYYYMMDD}`) for every user whose local morning it is
(ORRERY_PROACTIVE_PROMPTS_LOCAL_HOUR on their users.timezone clock), with new memory in the last day, whose cycle is
not due (the chain writes theirs) and did not start in the last day (the chain just did); such a run belongs to no
cycle and continues no chain.

Idempotent because (DESIGN.md invariant 2): a run is keyed (`cycle:<stamp>` or `daily:<date>`), its prompts'
ids derive from that key and their normalized text, and the write (store/proactive_prompts_writes.py) takes the
user's prompt lock and writes nothing when the key already wrote prompts; before the LLM call the same check
skips the call. Stale pending prompts expire first; the cap counts what is pending after that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from core.cycle import Cycle, cycle_due_at
from core.errors import PermanentError
from core.local_time import local_date, local_hour
from jobs.cycle import CycleArgs, StepResult, chain_step
from jobs.grounding import recall_history, recalled_for
from jobs.resources import EMBEDDER, LLM, VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.user_locale import language_for, zone_for
from store.cycles import CycleState
from store.proactive_prompts_writes import (
    DailyCandidate,
    NewPrompt,
    PromptSource,
    cycle_run_key,
    daily_run_key,
    expire_prompts,
    read_prompt_source,
    users_for_daily_prompts,
    write_prompts,
)
from store.repos import proactive_prompts

if TYPE_CHECKING:
    from agents.llm import LLMClient
    from agents.proactive_prompts import PromptMaterial
    from store.recall import Recalled

RECENT_MEMORIES = 20
"""How many of the user's newest memory units the model sees."""
EARLIER_MEMORIES = 5
"""Older memory units recalled from the whole history for the current themes (jobs/grounding.py), each cut to the
agent's MEMORY_CHARS: the prompt's budget for them."""


class ProactivePromptsArgs(CycleArgs):
    model_config = ConfigDict(extra="forbid")

    daily: date | None = Field(
        None, description="The daily schedule's run for this day on the user's clock (continues no chain)"
    )

    @model_validator(mode="after")
    def _one_occasion(self) -> ProactivePromptsArgs:
        if self.daily is not None and self.cycle_start is not None:
            raise ValueError("give cycle_start (a cycle's run) or daily (the daily run), not both")
        return self

    @property
    def in_chain(self) -> bool:
        return self.daily is None

    def outside_chain_job_id(self) -> str:
        assert self.daily is not None
        return daily_job_id(self.user_id, self.daily)


def daily_job_id(user_id: str, day: date) -> str:
    """The daily run's one job id, however it is enqueued."""
    return f"proactive_prompts:{user_id}:daily:{day:%Y%m%d}"


def prompt_material(user_id: str, source: PromptSource, slots: int, earlier: Sequence[Recalled] = ()) -> PromptMaterial:
    """The agent's input from the store's rows (and the earlier memories recalled for them); the open topics come
    from the next-conversation package."""
    from agents.proactive_prompts import CycleInsight, EarlierMemory, OpenTopic, PromptMaterial, RecentMemory

    topics = open_topics(source)
    return PromptMaterial(
        user_id=user_id,
        memory_profile=source.memory_profile,
        memories=[
            RecentMemory(
                memory_unit_id=m["muid"], title=m["title"], content=m["content"], importance=m["importance_score"]
            )
            for m in source.memories
        ],
        earlier=[
            EarlierMemory(
                memory_unit_id=m.entity_id,
                title=m.title,
                content=m.text,
                importance=m.importance,
                recalled_for=recalled_for(m),
            )
            for m in earlier
        ],
        insights=[
            CycleInsight(artifact_id=a["artifact_id"], title=a["title"], narrative=a["content_narrative"])
            for a in source.insights
        ],
        open_topics=[OpenTopic(topic=t["topic"], suggested_question=t.get("suggested_question")) for t in topics],
        pending=source.pending,
        slots=slots,
    )


def open_topics(source: PromptSource) -> list[dict[str, Any]]:
    """The unresolved topics of the next-conversation package that have a topic."""
    topics = (source.next_context or {}).get("unresolved_topics")
    return [
        t
        for t in (topics if isinstance(topics, list) else [])
        if isinstance(t, dict) and isinstance(t.get("topic"), str) and t["topic"].strip()
    ]


def themes(source: PromptSource) -> list[tuple[str, str]]:
    """What recall over the whole history is asked about, most pressing first: the open topics, the cycle's insights,
    then the most important recent memories ((name, text to embed) each)."""
    found = [(t["topic"], t["topic"]) for t in open_topics(source)]
    found += [(a["title"], f"{a['title']}\n{a['content_narrative'] or ''}") for a in source.insights]
    ranked = sorted(source.memories, key=lambda m: -(m["importance_score"] or 0))
    found += [(m["title"], f"{m['title']}\n{m['content']}") for m in ranked]
    return found


async def write_run(
    ctx: JobContext, state: CycleState, run_key: str, insights_since: datetime, now: datetime
) -> dict[str, Any]:
    """Expire stale prompts, then (unless this run already wrote prompts, the cap is full or there is nothing to ask
    about) one LLM call and the write."""
    from agents.proactive_prompts import SOURCE_AGENT, ProactivePromptAgent

    settings, user_id = ctx.settings, state.user_id
    expiry = timedelta(days=settings.proactive_prompt_expiry_days)
    expire_before = now - expiry
    expired = await expire_prompts(ctx.pool, user_id, created_before=expire_before, now=now)
    if await proactive_prompts.run_wrote_prompts(ctx.pool, user_id, run_key):
        return {"outcome": "already_written", "expired": expired, "llm_calls": 0}
    source = await read_prompt_source(ctx.pool, user_id, insights_since=insights_since, memory_limit=RECENT_MEMORIES)
    if source is None:
        raise PermanentError(f"user {user_id} was deleted while their prompts were being made")
    slots = settings.proactive_prompts_max_pending - len(source.pending)
    material = prompt_material(user_id, source, slots)
    if material.slots <= 0:
        return {"outcome": "cap_reached", "expired": expired, "llm_calls": 0}
    if not material.has_material:
        return {"outcome": "nothing_to_ask", "expired": expired, "llm_calls": 0}
    earlier = await recall_history(
        ctx,
        user_id,
        themes(source),
        agent="proactive_prompts",
        limit=EARLIER_MEMORIES,
        exclude={m["muid"] for m in source.memories},
    )
    material = prompt_material(user_id, source, slots, earlier)
    material.language = language_for(ctx.log, user_id, state.language_preference)
    llm: LLMClient = await ctx.resource(LLM)
    result = await ProactivePromptAgent.from_settings(llm, settings).run(material, job_id=ctx.job_id)
    prompts = [
        NewPrompt(
            prompt_text=draft.prompt_text,
            priority=draft.priority,
            source_agent=SOURCE_AGENT,
            metadata={
                "rationale": draft.rationale,
                "suggested_timing": draft.suggested_timing,
                "source_memory_unit_ids": draft.memory_unit_ids,
                "source_artifact_ids": draft.artifact_ids,
                "topics": draft.topics,
                "model": result.model,
                "prompt_version": result.prompt_version,
            },
        )
        for draft in result.drafts
    ]
    summary = await write_prompts(
        ctx.pool,
        user_id,
        run_key,
        prompts,
        cap=settings.proactive_prompts_max_pending,
        expire_before=expire_before,
        now=now,
        expires_at=now + expiry,
    )
    return {**summary.as_dict(), "expired": expired + summary.expired, "llm_calls": result.usage.calls}


async def run_cycle_prompts(ctx: JobContext, args: ProactivePromptsArgs, cycle: Cycle, state: CycleState) -> StepResult:
    """A cycle's run: key it by the cycle → expire, read, ask (one LLM call at most), write; the chain goes on."""
    run_key = cycle_run_key(cycle)
    result = await write_run(ctx, state, run_key, cycle.start, datetime.now(UTC))
    ctx.log.info("proactive_prompts.done", run_key=run_key, **result)
    return StepResult({"run_key": run_key, **result})


async def run_daily_prompts(ctx: JobContext, args: ProactivePromptsArgs, state: CycleState) -> Mapping[str, Any]:
    """The daily schedule's run: keyed by the day, shown the insights since the current cycle began."""
    assert args.daily is not None
    run_key = daily_run_key(args.daily)
    result = await write_run(ctx, state, run_key, state.cycle.start, datetime.now(UTC))
    ctx.log.info("proactive_prompts.done", run_key=run_key, **result)
    return {"run_key": run_key, **result}


def daily_runs(
    candidates: list[DailyCandidate], now: datetime, zones: Mapping[str, tzinfo], *, hour: int, length_days: float
) -> list[tuple[str, date]]:
    """The (user, local day) daily runs due at `now`: users for whom it is `hour` o'clock on their own clock
    (`zones`: user id → zone) and whose cycle is not due (the chain writes theirs); the day is the user's own."""
    return [
        (c.user_id, local_date(now, zones[c.user_id]))
        for c in candidates
        if local_hour(now, zones[c.user_id]) == hour
        and cycle_due_at(c.cycle.start, length_days, zones[c.user_id]) > now
    ]


async def enqueue_daily_prompts(ctx: JobContext, args: DailyArgs) -> Mapping[str, Any]:
    """The hourly schedule of the daily prompts: one proactive_prompts run per user whose local morning it is,
    keyed by their local day (see the module docstring)."""
    now = args.at or datetime.now(UTC)
    candidates = await users_for_daily_prompts(ctx.pool, now=now)
    zones = {c.user_id: zone_for(ctx.log, c.user_id, c.timezone) for c in candidates}
    settings = ctx.settings
    runs = daily_runs(
        candidates, now, zones, hour=settings.proactive_prompts_local_hour, length_days=settings.cycle_length_days
    )
    enqueued = 0
    for user_id, day in runs:
        queued = await ctx.enqueue(PROACTIVE_PROMPTS, {"user_id": user_id, "daily": day.isoformat()})
        enqueued += queued.enqueued
    return {"users": len(runs), "enqueued": enqueued}


class DailyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = Field(
        None, description="Choose the users as at this moment instead of now (a test's clock, or a missed hour)."
    )


PROACTIVE_PROMPTS = chain_step(
    "proactive_prompts",
    run_cycle_prompts,
    timeout_s=300,
    max_tries=5,
    backoff_s=30,
    resources=(LLM, EMBEDDER, VECTOR),
    args_model=ProactivePromptsArgs,
    outside_chain=run_daily_prompts,
    description=(
        "Write a few proactive prompts for a user (deduplicated against their pending ones, capped, stale ones"
        " expired); the chain's second step, then cycle_report.\n"
        "In the chain as proactive_prompts:{user_id}:{cycle}; proactive_prompts_daily enqueues"
        " proactive_prompts:{user_id}:daily:{YYYYMMDD} (`daily` set); `--arg user_id=…` runs the current cycle's."
    ),
)

PROACTIVE_PROMPTS_DAILY = JobSpec(
    name="proactive_prompts_daily",
    args_model=DailyArgs,
    handler=enqueue_daily_prompts,
    queue=BATCH,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    dedupe_key="proactive_prompts_daily",
    cron="40 * * * *",
    description=(
        "Enqueue the daily proactive_prompts run of every user whose local morning it is"
        " (ORRERY_PROACTIVE_PROMPTS_LOCAL_HOUR on their users.timezone clock), with new memory in the last day,"
        " whose cycle is not due and did not just start. Runs hourly; each user's run is keyed by their local day."
    ),
)
