"""What ingestion takes from the embeddings: what the model is shown of the user's memory (the concepts most relevant
to the conversation, the earlier memory units nearest to it), and the similarity rule of concept deduplication.

What the model is shown is best effort: the vector store lags a commit behind and may be down, and ingestion never
waits for it (DESIGN.md invariant 1). The conversation is embedded once (QUERY_CHARS, the user's lines first) and
that one vector searches both. Lag is handled, not hoped away: the user's newest memory units whose vector outbox
rows are still pending (the previous conversation, ingested seconds ago) are embedded in the same call as the
conversation, one forward pass, and ranked with the store's hits; their vectors stay in the embedder's text cache,
where the dispatcher finds them when it writes them to the store, so they are embedded once in all. When the store
or the embedder fails, a warning is logged and the model is shown the user's most recent concepts and memory units
instead.

The similarity rule is not best effort: deduplication that quietly depends on whether a model or an endpoint
answered in time is no deduplication. The worker loads the local model before it takes work (jobs/resources.py),
the rule embeds only the new concepts' names (once, through the embedder's text cache) and finds the nearest
existing names in Postgres (store/concept_names.py), so it costs an ingestion one small batch on the model; an
embeddings endpoint that is down is waited for (EMBEDDER_PATIENCE_S, keeping the LLM answer already paid for), then
the job is retried with the runtime's backoff, never written without the rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.backoff import equal_jitter
from core.embedding_texts import concept_text, memory_unit_text
from core.errors import TransientError
from core.ingestion import IngestionResult
from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.retry import describe
from store import concept_names, outbox
from store.repos.concepts import ConceptRecord
from store.repos.conversations import ConversationForJob
from store.repos.memory_units import MemoryUnitRecord
from store.sync import read_records
from store.vector.base import SourceEntityType, VectorHit, VectorStore

if TYPE_CHECKING:
    from agents.embeddings import Embedder
    from agents.llm import CallContext

QUERY_CHARS = 4000
"""How much of the conversation is embedded to find its concepts and earlier memories (the model truncates at 256
word pieces anyway; the user's own lines come first)."""
EARLIER_CANDIDATES = 12
"""Earlier memory units asked of the vector store; the agent shows the nearest its token budget holds."""
EARLIER_FLOOR = 0.2
"""Earlier memory units less similar than this to the conversation are not shown: unrelated ones only cost tokens
(bench/bench_revisions.py)."""
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


@dataclass(frozen=True)
class Recalled:
    """What the model is shown of the user's memory: concepts (the nearest, then the most recent) and earlier memory
    units (nearest first; the agent keeps as many as its token budget holds)."""

    concepts: list[ConceptRecord]
    memories: list[MemoryUnitRecord]


async def recall_for_ingestion(ctx: JobContext, source: ConversationForJob, concept_limit: int) -> Recalled:
    """The concepts and earlier memory units to show the model for this conversation, from one embedding of it
    (none when there is nothing to search: few concepts, no earlier memory)."""
    recent_concepts, recent_memories = list(source.concepts), list(source.memories)
    query = conversation_query(source)
    search_concepts = bool(query) and len(recent_concepts) >= concept_limit
    search_memories = bool(query and recent_memories) and ctx.settings.ingestion_earlier_memory_tokens > 0
    if not (search_concepts or search_memories):
        return Recalled(recent_concepts[:concept_limit], [])  # every concept is shown, no memory to show
    user_id = source.conversation.user_id
    try:
        lagging = await _lagging(ctx, user_id, recent_memories) if search_memories else []
        embedder, context = await _context(ctx, user_id)
        vector = await ctx.resource(VECTOR)
        texts = [query, *(memory_unit_text(unit.title, unit.content) for unit in lagging)]
        embedded, *lag_vectors = await embedder.embed(texts, context=context)
        concept_hits, memory_hits = await asyncio.gather(
            _search(vector, user_id, embedded, concept_limit, SourceEntityType.CONCEPT, search_concepts),
            _search(vector, user_id, embedded, EARLIER_CANDIDATES, SourceEntityType.MEMORY_UNIT, search_memories),
        )
        concepts = await read_records(ctx.pool, user_id, NodeLabel.CONCEPT, [h.source_entity_id for h in concept_hits])
        units = await read_records(ctx.pool, user_id, NodeLabel.MEMORY_UNIT, [h.source_entity_id for h in memory_hits])
    except Exception as exc:
        ctx.log.warning("ingest.recall_unavailable", error_class=type(exc).__name__, error=describe(exc))
        return Recalled(recent_concepts[:concept_limit], recent_memories if search_memories else [])
    nearest_concepts = [concepts[hit.source_entity_id] for hit in concept_hits if hit.source_entity_id in concepts]
    chosen: dict[str, ConceptRecord] = {}
    for concept in [*nearest_concepts, *recent_concepts]:
        chosen.setdefault(concept.concept_id, concept)
    scores = {hit.source_entity_id: hit.score for hit in memory_hits if hit.source_entity_id in units}
    for unit, unit_vector in zip(lagging, lag_vectors, strict=True):
        units[unit.muid] = unit
        similarity = sum(a * b for a, b in zip(embedded, unit_vector, strict=True))  # unit vectors: the cosine
        scores[unit.muid] = max(scores.get(unit.muid, -1.0), similarity)
    nearest = sorted(scores, key=lambda muid: (-scores[muid], muid))
    conversation_id = source.conversation.id
    return Recalled(
        concepts=[c for c in chosen.values() if c.status == "active"][:concept_limit],
        memories=[
            units[muid]
            for muid in nearest
            if scores[muid] >= EARLIER_FLOOR and units[muid].source_conversation_id != conversation_id
        ],
    )


async def _lagging(ctx: JobContext, user_id: str, recent: list[MemoryUnitRecord]) -> list[MemoryUnitRecord]:
    """The user's newest memory units the vector store does not hold yet (their vector outbox rows wait)."""
    waiting = await outbox.pending(ctx.pool, "vector", user_id, NodeLabel.MEMORY_UNIT, [u.muid for u in recent])
    return [unit for unit in recent if unit.muid in waiting]


async def _search(
    vector: VectorStore, user_id: str, embedded: list[float], limit: int, kind: SourceEntityType, wanted: bool
) -> list[VectorHit]:
    return await vector.search(user_id, embedded, limit=limit, entity_types=[kind]) if wanted else []


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
