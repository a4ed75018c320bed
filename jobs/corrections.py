"""The user corrects their memory (issue 19, item 5): `apply_corrections` turns a user's new interaction_logs rows (a
correction, feedback on a card, a reflection; docs/contract.md) into revisions with ONE LLM call per batch, never one
per row; `corrections_sweep` enqueues it every minute for each user with new rows (the web app may also enqueue it
right after writing one, through the TypeScript client).

Idempotent because (DESIGN.md invariant 2): rows are claimed before the call and settled in the transaction that
writes the revisions (store/corrections_writes.py), so a rerun after a success finds nothing pending and makes no
call; a rerun after a crash decides the same pending rows again and writes to the same ids. A run that dies settles
its rows as failed (the dead hook), so a batch that cannot succeed never spends calls again and again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.corrections import CORRECTION_TYPES, CardFeedback
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.registry import BATCH, JobSpec
from jobs.sync import follow_commit
from store.corrections_writes import Targets, read_targets, write_corrections
from store.repos import consumed_interactions
from store.repos._base import utc_now
from store.repos.consumed_interactions import InteractionRecord

if TYPE_CHECKING:
    from agents.corrections import CorrectionMaterial

TEXT_CHARS = 4000
"""A user's text is shown up to this long (the web app may store more)."""


class ApplyCorrectionsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200, description="users.user_id whose new interactions to apply")


def verdict_of(interaction: InteractionRecord) -> str | None:
    """A card feedback's verdict; content_structured that is not a CardFeedback reads as none (the text may still
    say what the user meant)."""
    if interaction.content_structured is None:
        return None
    try:
        return CardFeedback.model_validate(interaction.content_structured).verdict.value
    except ValidationError:
        return None


def correction_material(user_id: str, batch: list[InteractionRecord], targets: Targets) -> CorrectionMaterial:
    from agents.corrections import CorrectionMaterial, Interaction, TargetConcept, TargetMemory

    return CorrectionMaterial(
        user_id=user_id,
        interactions=[
            Interaction(
                interaction_id=i.interaction_id,
                kind=i.interaction_type,
                at=i.timestamp,
                text=(i.content_text or "")[:TEXT_CHARS] or None,
                verdict=verdict_of(i),
                target_id=targets.of.get(i.interaction_id),
            )
            for i in batch
        ],
        memories=[
            TargetMemory(memory_unit_id=u.muid, title=u.title, content=u.content, importance=u.importance_score)
            for u in targets.memory_units.values()
        ],
        concepts=[
            TargetConcept(concept_id=c.concept_id, name=c.name, type=c.type, description=c.description)
            for c in targets.concepts.values()
        ],
    )


async def apply_corrections(ctx: JobContext, args: ApplyCorrectionsArgs) -> Mapping[str, Any]:
    """Claim the user's new interactions (CORRECTIONS_BATCH_SIZE at most), decide them in one LLM call, write the
    revisions and settle them in one transaction."""
    from agents.corrections import CorrectionsAgent

    ctx.bind(user_id=args.user_id)
    batch = await consumed_interactions.claim_interactions(
        ctx.pool, args.user_id, ctx.job_id, CORRECTION_TYPES, limit=ctx.settings.corrections_batch_size
    )
    if not batch:
        return {"user_id": args.user_id, "outcome": "nothing_new"}
    targets = await read_targets(ctx.pool, args.user_id, batch)
    llm = await ctx.resource(LLM)
    agent = CorrectionsAgent.from_settings(llm, ctx.settings)
    result = await agent.run(correction_material(args.user_id, batch, targets), job_id=ctx.job_id)
    summary = await write_corrections(
        ctx.pool,
        args.user_id,
        [i.interaction_id for i in batch],
        result.decisions,
        card_importance=ctx.settings.card_importance_threshold,
    )
    if summary.revisions:
        await follow_commit(ctx)  # the graph and vector stores catch up with the revisions
    ctx.log.info("corrections.done", interactions=len(batch), **summary.as_dict())
    return {"user_id": args.user_id, "outcome": "written", "interactions": len(batch), **summary.as_dict()}


async def fail_pending_when_dead(ctx: JobContext, args: ApplyCorrectionsArgs, reason: str) -> None:
    """A dead run's claimed interactions are settled as failed with the reason: the sweep does not take them again,
    so an answer that cannot be used costs its calls once, not every minute."""
    failed = await consumed_interactions.fail_pending(ctx.pool, args.user_id, reason, at=utc_now())
    ctx.log.warning("corrections.dead", user_id=args.user_id, interactions=failed)


class CorrectionsSweepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(500, ge=1, le=10_000, description="Users enqueued per run at most.")


async def corrections_sweep(ctx: JobContext, args: CorrectionsSweepArgs) -> Mapping[str, Any]:
    """Enqueue apply_corrections for every user with an interaction not yet settled; one already queued or running
    is not enqueued twice (its dedupe key), and a user with nothing new costs no LLM call."""
    users = await consumed_interactions.users_with_new_interactions(ctx.pool, CORRECTION_TYPES, limit=args.limit)
    enqueued = 0
    for user_id in users:
        enqueued += (await enqueue(ctx.redis, ctx.pool, APPLY_CORRECTIONS, {"user_id": user_id})).enqueued
    return {"users": len(users), "enqueued": enqueued}


APPLY_CORRECTIONS = JobSpec(
    name="apply_corrections",
    args_model=ApplyCorrectionsArgs,
    handler=apply_corrections,
    queue=BATCH,
    timeout_s=300,
    max_tries=5,
    backoff_s=10,
    dedupe_key="apply_corrections:{user_id}",
    cron=None,
    on_dead=fail_pending_when_dead,
    resources=(LLM,),
    description=(
        "Turn a user's new corrections, card feedback and reflections (interaction_logs) into memory revisions, in"
        " one LLM call per batch.\nEnqueued by corrections_sweep every minute, or by the web app after writing a row."
    ),
)
CORRECTIONS_SWEEP = JobSpec(
    name="corrections_sweep",
    args_model=CorrectionsSweepArgs,
    handler=corrections_sweep,
    queue=BATCH,
    timeout_s=50,
    max_tries=1,  # the next minute's run is the retry
    backoff_s=0,
    dedupe_key="corrections_sweep",
    cron="* * * * *",
    description="Enqueue apply_corrections for every user with new corrections, card feedback or reflections.",
)
