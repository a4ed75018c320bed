"""The ingestion job: one ended conversation → long-term memory, written once.

Idempotent because (DESIGN.md invariant 2): its job id is `ingest:{conversation_id}`, so a duplicate enqueue while
one is queued or running is dropped; the write (store/ingestion_writes.py) is one transaction that locks the
conversation row and does nothing when it is already `processed`, so a worker killed after the LLM call, a retry or
a manual re-trigger never duplicates a row; and `reprocess=true` first deletes what the conversation produced.

Status: `ended` becomes `processing` once the job has read the conversation and starts its LLM work, then
`processed` in the write's transaction; a job that is dead (whatever the path) marks it `failed` in its on_dead
hook, so the timeout sweep (which enqueues `ended` and `processing` conversations, a lost job's included) stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from core.errors import PermanentError
from jobs.ingestion_recall import dedupe_by_similarity, relevant_concepts
from jobs.resources import EMBEDDER, LLM, VECTOR
from jobs.runtime import tracing
from jobs.runtime.context import JobContext
from jobs.runtime.registry import INTERACTIVE, JobSpec
from jobs.sync import follow_commit
from store.context import TurnContextPackage, read_turn_context
from store.ingestion_writes import IngestionThresholds, write_ingestion
from store.postgres import Executor
from store.repos import conversations
from store.repos.conversations import ConversationForJob

if TYPE_CHECKING:
    from agents.ingestion import IngestionInput

RELEVANT_CONCEPTS = 50
"""How many of the user's concepts the model sees (as handles) so it can reuse them instead of inventing twins: the
most relevant to the conversation's text first (similarity, recency and salience), then the most salient
(jobs/ingestion_recall.py)."""

INGESTIBLE = ("ended", "processing", "failed", "processed")
"""Statuses the job accepts; 'active' conversations are still being written and are ingested when they end."""


class IngestArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str = Field(min_length=1, max_length=200, description="conversations.id to ingest")
    reprocess: bool = Field(False, description="Re-derive a processed conversation, replacing what it produced")


async def read_ingestion_source(
    db: Executor, redis: aioredis.Redis, conversation_id: str
) -> tuple[ConversationForJob | None, TurnContextPackage | None]:
    """Everything the agent reads, from Postgres (one statement) and Redis (the live turn context) at once."""
    return await asyncio.gather(
        conversations.read_conversation_for_job(db, conversation_id, concept_limit=RELEVANT_CONCEPTS),
        read_turn_context(redis, conversation_id),
    )


def ingestion_input(source: ConversationForJob, turn_context: TurnContextPackage | None) -> IngestionInput:
    """The agent's input: messages, the live turn context, the memory profile, the relevant concepts."""
    from agents.ingestion import ConversationInput, ConversationMessage, ExistingConcept, IngestionInput

    conversation = source.conversation
    return IngestionInput(
        conversation=ConversationInput(
            id=conversation.id,
            user_id=conversation.user_id,
            title=conversation.title,
            start_time=conversation.start_time,
            messages=[
                ConversationMessage(role=m.role, content=m.content, timestamp=m.timestamp) for m in source.messages
            ],
        ),
        turn_context=turn_context,
        memory_profile=source.memory_profile,
        existing_concepts=[
            ExistingConcept(concept_id=c.concept_id, name=c.name, type=c.type, description=c.description)
            for c in source.concepts
        ],
    )


async def ingest(ctx: JobContext, args: IngestArgs) -> Mapping[str, Any]:
    """Load → extract (one LLM call per window) → write in one transaction.

    The agent is imported here, not at the top: listing jobs or probing health must not load the LLM client."""
    from agents.ingestion import IngestionAgent

    conversation_id = args.conversation_id
    source, turn_context = await read_ingestion_source(ctx.pool, ctx.redis, conversation_id)
    if source is None:
        raise PermanentError(f"conversation {conversation_id} does not exist; nothing to ingest")
    conversation = source.conversation
    user_id = conversation.user_id
    ctx.bind(user_id=user_id)
    if conversation.status == "processed" and not args.reprocess:
        ctx.log.info("ingest.skipped", reason="already processed")
        return {"conversation_id": conversation_id, "outcome": "already_processed"}
    if conversation.status not in INGESTIBLE:
        raise PermanentError(
            f"conversation {conversation_id} is '{conversation.status}', not ended; it is ingested when it ends "
            f"(timeout sweep or the web app setting status 'ended')"
        )

    source = source.model_copy(update={"concepts": await relevant_concepts(ctx, source, RELEVANT_CONCEPTS)})
    data = ingestion_input(source, turn_context)
    llm = await ctx.resource(LLM)
    agent = IngestionAgent.from_settings(llm, ctx.settings)
    # 'processing' is shown while the LLM works (the write's own check is on 'processed'). It is set alongside the
    # call, so it costs no round trip of its own, and settled before the write locks the row or the job's error is
    # raised.
    moving = None
    if conversation.status == "ended":
        moving = asyncio.create_task(
            conversations.set_conversation_status(
                ctx.pool, user_id, conversation_id, "processing", only_from=("ended",)
            )
        )
    try:
        extracted = await agent.run(data, job_id=ctx.job_id)
        result = await dedupe_by_similarity(ctx, extracted, has_concepts=bool(source.concepts))
    except BaseException:
        if moving is not None:
            await asyncio.gather(moving, return_exceptions=True)
        raise
    if moving is not None:
        await moving

    thresholds = IngestionThresholds(
        importance=ctx.settings.ingestion_importance_threshold,
        card_importance=ctx.settings.card_importance_threshold,
    )
    with tracing.span("store.write", {"orrery.store": "postgres", "orrery.write": "ingestion"}):
        summary = await write_ingestion(ctx.pool, result, thresholds, reprocess=args.reprocess)
    if summary.outcome != "already_processed":
        await follow_commit(ctx)  # the graph and vector stores catch up with what was just committed
    ctx.log.info(
        "ingest.done",
        outcome=summary.outcome,
        memory_units=summary.memory_units,
        concepts_created=summary.concepts_created,
        llm_calls=result.llm_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    return {**summary.as_dict(), "llm_calls": result.llm_calls, "windows": result.windows}


async def mark_failed_when_dead(ctx: JobContext, args: IngestArgs, reason: str) -> None:
    """The one place that says what a dead ingestion means for its conversation (called by the runtime on every
    dead path: a permanent error, the last try spent, timed out or abandoned on the last try).

    The conversation becomes `failed` with the reason, so the timeout sweep stops enqueueing it with a fresh budget
    of tries; a `processed` one keeps its status and memory (a failed reprocess rolled back) with the reason in
    metadata.reprocess_failure; an `active` one is left alone (see conversations.mark_conversation_failed).
    """
    if "\x00" in args.conversation_id:
        return  # Postgres cannot hold it, so no conversation has this id (and asking would raise)
    source = await conversations.read_conversation_for_job(ctx.pool, args.conversation_id, concept_limit=0)
    if source is None:
        return  # never existed or deleted since: nothing to mark
    user_id = source.conversation.user_id
    status = await conversations.mark_conversation_failed(ctx.pool, user_id, args.conversation_id, reason)
    ctx.log.warning("ingest.dead", conversation_id=args.conversation_id, user_id=user_id, status=status)


INGEST = JobSpec(
    name="ingest",
    args_model=IngestArgs,
    handler=ingest,
    queue=INTERACTIVE,
    timeout_s=300,
    max_tries=5,
    backoff_s=10,
    dedupe_key="ingest:{conversation_id}",
    cron=None,
    on_dead=mark_failed_when_dead,
    resources=(LLM, EMBEDDER, VECTOR),
    description=(
        "Turn an ended conversation into memory units, concepts, growth events, cards and the next greeting.\n"
        "Enqueued by the timeout sweep for every ended conversation; `--arg reprocess=true` re-derives one."
    ),
)
