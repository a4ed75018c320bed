"""What ingestion takes from the embeddings: the concepts most relevant to a conversation, and the similarity rule of
concept deduplication.

The relevant concepts are best effort: the vector store lags a commit behind and may be down, and ingestion never
waits for it (DESIGN.md invariant 1), so a failure there logs a warning and the model is shown the user's most
recent concepts instead. The similarity rule is not: deduplication that quietly depends on whether a model or an
endpoint answered in time is no deduplication. The worker loads the local model before it takes work
(jobs/resources.py), the rule embeds only the new concepts' names (once, through the embedder's text cache) and
finds the nearest existing names in Postgres (store/concept_names.py), so it costs an ingestion one small batch on
the model; an embeddings endpoint that is down is waited for (EMBEDDER_PATIENCE_S, keeping the LLM answer already
paid for), then the job is retried with the runtime's backoff, never written without the rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.backoff import equal_jitter
from core.embedding_texts import concept_text
from core.errors import TransientError
from core.ingestion import IngestionResult
from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.retry import describe
from store import concept_names
from store.recall import Query, recall
from store.repos.concepts import ConceptRecord
from store.repos.conversations import ConversationForJob
from store.sync import read_records

if TYPE_CHECKING:
    from agents.embeddings import Embedder
    from agents.llm import CallContext

QUERY_CHARS = 4000
"""How much of the conversation is embedded to find its concepts (the model truncates at 256 word pieces anyway;
the user's own lines come first)."""
CANDIDATES = 5
"""Existing concepts considered per new one: the nearest names of the same type."""
EMBEDDER_PATIENCE_S = 60.0
"""How long the similarity rule keeps trying an embeddings endpoint that fails (each try with the client's own
retries) before the job is handed back to the runtime's retry, which asks the LLM again."""
PATIENCE_BASE_S, PATIENCE_CAP_S = 2.0, 20.0
"""The waits between those tries: 2, 4, 8 … s (jittered), at most 20 s."""


def conversation_query(source: ConversationForJob) -> str:
    """The text a conversation's concepts are searched with: the user's lines first, then the companion's."""
    lines = [m.content for m in source.messages if m.role == "user"]
    lines += [m.content for m in source.messages if m.role != "user"]
    return "\n".join(line.strip() for line in lines if line.strip())[:QUERY_CHARS]


async def _context(ctx: JobContext, user_id: str) -> tuple[Embedder, CallContext]:
    """The embedder (already open in a worker: it loads the local model before taking work) and the call context
    its cost is recorded under."""
    from agents.llm import CallContext

    embedder = await ctx.resource(EMBEDDER)
    return embedder, CallContext(user_id=user_id, agent="ingestion", job_id=ctx.job_id)


async def relevant_concepts(ctx: JobContext, source: ConversationForJob, limit: int) -> list[ConceptRecord]:
    """The user's concepts most relevant to the conversation first, ranked by recall (similarity to its text,
    recency and salience together: store/recall.py), then the most salient and recent ones, `limit` in all (the
    salient ones alone when the stores cannot answer)."""
    recent = list(source.concepts)
    query = conversation_query(source)
    user_id = source.conversation.user_id
    if not query or len(recent) < limit:
        return recent[:limit]  # fewer concepts than places: every one is shown, no search needed
    try:
        embedder, context = await _context(ctx, user_id)
        vector = await ctx.resource(VECTOR)
        [embedded] = await embedder.embed([query], context=context)
        recalled = await recall(
            ctx.pool,
            vector,
            user_id,
            [Query("the conversation", embedded)],
            weights=ctx.settings.recall_weights,
            labels=(NodeLabel.CONCEPT,),
            limit=min(limit, 100),
        )
        found = await read_records(ctx.pool, user_id, NodeLabel.CONCEPT, [item.entity_id for item in recalled])
    except Exception as exc:
        ctx.log.warning("ingest.relevant_concepts_unavailable", error_class=type(exc).__name__, error=describe(exc))
        return recent[:limit]
    nearest = [found[item.entity_id] for item in recalled if item.entity_id in found]
    chosen: dict[str, ConceptRecord] = {}
    for concept in [*nearest, *recent]:
        if concept.status == "active" and concept.concept_id not in chosen:
            chosen[concept.concept_id] = concept
    return list(chosen.values())[:limit]


async def embed_patiently(
    ctx: JobContext, embedder: Embedder, texts: Sequence[str], context: CallContext
) -> list[list[float]]:
    """`texts` embedded; while the embedder fails transiently (an endpoint outage) tried again with backoff for up to
    EMBEDDER_PATIENCE_S, then a TransientError for the runtime to retry the job with."""
    deadline = time.monotonic() + EMBEDDER_PATIENCE_S
    step = 0
    while True:
        try:
            return await embedder.embed(texts, context=context)
        except TransientError as exc:
            delay = equal_jitter(PATIENCE_BASE_S, step, PATIENCE_CAP_S)
            if time.monotonic() + delay > deadline:
                raise TransientError(
                    f"concept deduplication needs the embeddings endpoint, still failing after "
                    f"{EMBEDDER_PATIENCE_S:g} s ({describe(exc)}); the ingestion is retried with backoff and nothing "
                    "is written without it"
                ) from exc
            ctx.log.warning("ingest.embedder_unavailable", retry_in_s=round(delay, 1), error=describe(exc))
            await asyncio.sleep(delay)
            step += 1


async def dedupe_by_similarity(ctx: JobContext, result: IngestionResult, *, has_concepts: bool) -> IngestionResult:
    """`result` with each new concept that is an existing one by the similarity rule pointed at it
    (agents/ingestion/similar.py; threshold ORRERY_CONCEPT_SIMILARITY_THRESHOLD). A user with no concepts yet has
    nothing to match, and costs no embedding."""
    from agents.ingestion.similar import Candidate, match_similar, with_matches

    new = [draft for draft in result.concepts if draft.existing_concept_id is None]
    if not new or not has_concepts:
        return result
    embedder, context = await _context(ctx, result.user_id)
    vectors = await embed_patiently(ctx, embedder, [concept_text(d.name, d.type, None) for d in new], context)
    near = await concept_names.nearest(
        ctx.pool,
        result.user_id,
        embedder.model_version,
        [(vector, draft.type) for vector, draft in zip(vectors, new, strict=True)],
        limit=CANDIDATES,
    )
    candidates = {
        draft.key: [Candidate(m.concept_id, m.name, m.type, m.score) for m in matches]
        for draft, matches in zip(new, near, strict=True)
    }
    matched = match_similar(result.concepts, candidates, ctx.settings.concept_similarity_threshold)
    if matched:
        ctx.log.info(
            "ingest.concepts_matched_by_similarity",
            matched={key: f"{c.name} ({c.score:.2f})" for key, c in matched.items()},
        )
    return result.model_copy(update={"concepts": with_matches(result.concepts, matched)})
