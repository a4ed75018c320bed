"""The ingestion job: one ended conversation → long-term memory, written once.

Idempotent because (DESIGN.md invariant 2): its job id is `ingest:{conversation_id}`, so a duplicate enqueue while
one is queued or running is dropped; the write (store/ingestion_writes.py) is one transaction that locks the
conversation row and does nothing when it is already `processed`, so a worker killed after the LLM call, a retry or
a manual re-trigger never duplicates a row; and `reprocess=true` first deletes what the conversation produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from agents.ingestion import ConversationInput, ConversationMessage, ExistingConcept, IngestionAgent, IngestionInput
from jobs.context import JobContext
from jobs.errors import DeferredError, PermanentError
from jobs.registry import INTERACTIVE, JobSpec, register
from store.context import read_turn_context
from store.ingestion_writes import IngestionThresholds, write_ingestion
from store.postgres import Executor
from store.repos import concepts, conversations, users
from store.repos.conversations import ConversationRecord

RELEVANT_CONCEPTS = 50
"""How many of the user's concepts the model sees (as handles) so it can reuse them instead of inventing twins."""

INGESTIBLE = ("ended", "processing", "failed", "processed")
"""Statuses the job accepts; 'active' conversations are still being written and are ingested when they end."""


class IngestArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str = Field(min_length=1, max_length=200, description="conversations.id to ingest")
    reprocess: bool = Field(False, description="Re-derive a processed conversation, replacing what it produced")


async def load_ingestion_input(db: Executor, redis: aioredis.Redis, conversation: ConversationRecord) -> IngestionInput:
    """Everything the agent reads: messages, the live turn context, the memory profile, the relevant concepts."""
    user_id, conversation_id = conversation.user_id, conversation.id
    messages = await conversations.list_messages(db, user_id, conversation_id)
    user = await users.get_user(db, user_id)
    known = await concepts.list_relevant_concepts(db, user_id, limit=RELEVANT_CONCEPTS)
    return IngestionInput(
        conversation=ConversationInput(
            id=conversation_id,
            user_id=user_id,
            title=conversation.title,
            start_time=conversation.start_time,
            messages=[ConversationMessage(role=m.role, content=m.content, timestamp=m.timestamp) for m in messages],
        ),
        turn_context=await read_turn_context(redis, conversation_id),
        memory_profile=user.memory_profile if user is not None and isinstance(user.memory_profile, dict) else None,
        existing_concepts=[
            ExistingConcept(concept_id=c.concept_id, name=c.name, type=c.type, description=c.description) for c in known
        ],
    )


async def ingest(ctx: JobContext, args: IngestArgs) -> Mapping[str, Any]:
    """Load → extract (one LLM call per window) → write in one transaction."""
    conversation_id = args.conversation_id
    user_id = await conversations.find_conversation_owner(ctx.pool, conversation_id)
    if user_id is None:
        raise PermanentError(f"conversation {conversation_id} does not exist; nothing to ingest")
    ctx.bind(user_id=user_id)
    conversation = await conversations.get_conversation(ctx.pool, user_id, conversation_id)
    if conversation is None:
        raise PermanentError(f"conversation {conversation_id} was deleted before it could be ingested")
    if conversation.status == "processed" and not args.reprocess:
        ctx.log.info("ingest.skipped", reason="already processed")
        return {"conversation_id": conversation_id, "outcome": "already_processed"}
    if conversation.status not in INGESTIBLE:
        raise PermanentError(
            f"conversation {conversation_id} is '{conversation.status}', not ended; it is ingested when it ends "
            f"(timeout sweep or the web app setting status 'ended')"
        )

    data = await load_ingestion_input(ctx.pool, ctx.redis, conversation)
    agent = IngestionAgent.from_settings(await ctx.llm(), ctx.settings)
    try:
        result = await agent.run(data, job_id=ctx.job_id)
    except DeferredError:
        raise
    except PermanentError as exc:
        await conversations.mark_conversation_failed(ctx.pool, user_id, conversation_id, str(exc))
        raise
    except Exception as exc:
        if ctx.attempt >= SPEC.max_tries:  # the last try: say so on the row, or the timeout sweep would loop on it
            await conversations.mark_conversation_failed(
                ctx.pool, user_id, conversation_id, f"gave up after {ctx.attempt} tries: {type(exc).__name__}"
            )
        raise

    thresholds = IngestionThresholds(
        importance=ctx.settings.ingestion_importance_threshold,
        card_importance=ctx.settings.card_importance_threshold,
    )
    summary = await write_ingestion(ctx.pool, result, thresholds, reprocess=args.reprocess)
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


SPEC = register(
    JobSpec(
        name="ingest",
        args_model=IngestArgs,
        handler=ingest,
        queue=INTERACTIVE,
        timeout_s=300,
        max_tries=5,
        backoff_s=10,
        dedupe_key="ingest:{conversation_id}",
        cron=None,
        description=(
            "Turn an ended conversation into memory units, concepts, growth events, cards and the next greeting.\n"
            "Enqueued by the timeout sweep for every ended conversation; `--arg reprocess=true` re-derives one."
        ),
    )
)
