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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from core.errors import DeferredError, PermanentError
from core.media import MediaStatus
from jobs.ingestion_recall import Recalled, dedupe_by_similarity, recall_for_ingestion
from jobs.media import MEDIA
from jobs.resources import EMBEDDER, LLM, VECTOR
from jobs.runtime import tracing
from jobs.runtime.context import JobContext
from jobs.runtime.registry import INTERACTIVE, JobSpec
from jobs.sync import follow_commit
from jobs.user_locale import language_for
from store import revise
from store.context import TurnContextPackage, read_turn_context
from store.ingestion_writes import IngestionThresholds, write_ingestion
from store.postgres import Executor
from store.repos import conversations, media_items
from store.repos.conversations import ConversationForJob
from store.repos.media_items import MediaItemRecord

if TYPE_CHECKING:
    from agents.ingestion import Attachment, IngestionInput

RELEVANT_CONCEPTS = 50
"""How many of the user's concepts the model sees (as handles) so it can reuse them instead of inventing twins: the
nearest to the conversation's text by their embeddings first, then the most recent (jobs/ingestion_recall.py)."""
RECENT_MEMORIES = 5
"""The user's newest memory units read with the conversation: those the vector store may not hold yet are ranked
with its hits, and all of them are what the model sees when the store cannot answer (jobs/ingestion_recall.py)."""

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
        conversations.read_conversation_for_job(
            db, conversation_id, concept_limit=RELEVANT_CONCEPTS, memory_limit=RECENT_MEMORIES
        ),
        read_turn_context(redis, conversation_id),
    )


def ingestion_input(
    source: ConversationForJob,
    turn_context: TurnContextPackage | None,
    recalled: Recalled | None = None,
    attachments: list[MediaItemRecord] | None = None,
) -> IngestionInput:
    """The agent's input: messages, the live turn context, the memory profile, the relevant concepts, the earlier
    memories nearest to the conversation (`recalled`; the source's concepts and no memories without it) and the
    attachments."""
    from agents.ingestion import ConversationInput, ConversationMessage, EarlierMemory, ExistingConcept, IngestionInput

    recalled = recalled or Recalled(list(source.concepts), [])

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
            for c in recalled.concepts
        ],
        earlier_memories=[
            EarlierMemory(memory_unit_id=m.muid, title=m.title, content=m.content, creation_ts=m.creation_ts)
            for m in recalled.memories
        ],
        attachments=attachment_inputs(source, attachments or []),
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

    attachments = await read_attachments(ctx, source)
    recalled = await recall_for_ingestion(ctx, source, RELEVANT_CONCEPTS)
    shown = await revise.as_first_seen(ctx.pool, user_id, conversation_id, recalled.concepts, recalled.memories)
    data = ingestion_input(source, turn_context, Recalled(*shown), attachments)
    data.language = language_for(ctx.log, user_id, source.language_preference)
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
        result = await dedupe_by_similarity(ctx, extracted, has_concepts=bool(recalled.concepts))
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
    unread = sum(item.processing_status != MediaStatus.PROCESSED for item in attachments)
    return {
        **summary.as_dict(),
        "llm_calls": result.llm_calls,
        "windows": result.windows,
        "attachments": {"read": len(attachments) - unread, "unread": unread},
    }


async def read_attachments(ctx: JobContext, source: ConversationForJob) -> list[MediaItemRecord]:
    """The conversation's attachments (its messages' media ids: the owner's own items only), once they are read.

    An attachment still `pending` or `processing` has its media job enqueued (a no-op when it is queued or running)
    and the ingestion waits for it: deferred by ORRERY_MEDIA_WAIT_S, at most ORRERY_MEDIA_WAIT_TRIES times in the
    conversation's life (counted in its metadata.attachment_wait, so a job enqueued again does not start over).
    Then it goes on without them, and says so: the model is told what was not read, the ledger counts them."""
    media_ids = list(dict.fromkeys(media_id for message in source.messages for media_id in message.media_ids))
    if not media_ids:
        return []
    user_id, conversation_id = source.conversation.user_id, source.conversation.id
    items = await media_items.list_media_items(ctx.pool, user_id, media_ids)
    waiting = [item for item in items if item.processing_status in (MediaStatus.PENDING, MediaStatus.PROCESSING)]
    if not waiting:
        return items
    for item in waiting:
        await ctx.enqueue(MEDIA, {"media_id": item.media_id})
    tries = ctx.settings.media_wait_tries
    waited = await conversations.count_attachment_wait(ctx.pool, user_id, conversation_id)
    if waited <= tries:
        until = datetime.now(UTC) + timedelta(seconds=ctx.settings.media_wait_s)
        raise DeferredError(
            f"ingest: conversation {conversation_id} waits for {len(waiting)} attachment(s) to be read "
            f"(wait {waited} of {tries}, ORRERY_MEDIA_WAIT_TRIES); their media jobs are enqueued",
            until=until,
        )
    ctx.log.warning(
        "ingest.attachments_unread", conversation_id=conversation_id, unread=len(waiting), waited=waited - 1
    )
    return items


def attachment_inputs(source: ConversationForJob, items: list[MediaItemRecord]) -> list[Attachment]:
    """The attachments as the agent reads them: the number of the message each came with, its text or why none."""
    from agents.ingestion import Attachment

    first_message: dict[str, int] = {}
    for n, message in enumerate(source.messages, start=1):
        for media_id in message.media_ids:
            first_message.setdefault(media_id, n)
    attachments = []
    for item in items:
        reading = item.reading
        if reading is not None:
            unread = None
        elif item.processing_status == MediaStatus.FAILED:
            unread = f"it could not be read ({item.failure_reason})"
        else:
            unread = "it was still being read when the conversation was ingested"
        attachments.append(
            Attachment(
                media_id=item.media_id,
                kind=item.type,
                filename=item.filename,
                message=first_message.get(item.media_id),
                text=reading.text if reading else None,
                unread=unread,
            )
        )
    return attachments


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
