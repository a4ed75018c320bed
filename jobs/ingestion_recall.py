"""What ingestion takes from the derived stores: the concepts most relevant to a conversation, and the similarity
rule of concept deduplication. Both are best effort: the stores lag a commit behind and may be down, and ingestion
never waits for them (DESIGN.md invariant 1), so any failure here logs a warning and ingestion goes on without.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.embedding_texts import concept_text
from core.ingestion import IngestionResult
from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.retry import describe
from store.repos.concepts import ConceptRecord
from store.repos.conversations import ConversationForJob
from store.sync import read_records
from store.vector.base import SourceEntityType

if TYPE_CHECKING:
    from agents.embeddings import Embedder
    from agents.llm import CallContext

QUERY_CHARS = 4000
"""How much of the conversation is embedded to find its concepts (the model truncates at 256 word pieces anyway;
the user's own lines come first)."""
READY_WAIT_S = 1.0
"""How long ingestion waits for the embedder to open before it goes on without the stores."""
CANDIDATES = 5
"""Existing concepts considered per new one: the nearest by their stored vectors, then judged by name."""


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def conversation_query(source: ConversationForJob) -> str:
    """The text a conversation's concepts are searched with: the user's lines first, then the companion's."""
    lines = [m.content for m in source.messages if m.role == "user"]
    lines += [m.content for m in source.messages if m.role != "user"]
    return "\n".join(line.strip() for line in lines if line.strip())[:QUERY_CHARS]


async def _context(ctx: JobContext, user_id: str) -> tuple[Embedder, CallContext]:
    """The embedder, if it is ready within READY_WAIT_S: a worker's first use of the local model loads it (~4 s), and
    ingestion does not wait that long for a best-effort step. The load goes on in its thread and is kept, so the next
    ingestion finds the model ready."""
    from agents.llm import CallContext

    embedder = await asyncio.wait_for(ctx.resource(EMBEDDER), READY_WAIT_S)
    return embedder, CallContext(user_id=user_id, agent="ingestion", job_id=ctx.job_id)


async def relevant_concepts(ctx: JobContext, source: ConversationForJob, limit: int) -> list[ConceptRecord]:
    """The user's concepts nearest to the conversation's text first, then the most recent ones, `limit` in all
    (the recent ones alone when the stores cannot answer)."""
    recent = list(source.concepts)
    query = conversation_query(source)
    user_id = source.conversation.user_id
    if not query or len(recent) < limit:
        return recent[:limit]  # fewer concepts than places: every one is shown, no search needed
    try:
        embedder, context = await _context(ctx, user_id)
        vector = await ctx.resource(VECTOR)
        [embedded] = await embedder.embed([query], context=context)
        hits = await vector.search(user_id, embedded, limit=limit, entity_types=[SourceEntityType.CONCEPT])
        found = await read_records(ctx.pool, user_id, NodeLabel.CONCEPT, [hit.source_entity_id for hit in hits])
    except Exception as exc:
        ctx.log.warning("ingest.relevant_concepts_unavailable", error_class=type(exc).__name__, error=describe(exc))
        return recent[:limit]
    nearest = [found[hit.source_entity_id] for hit in hits if hit.source_entity_id in found]
    chosen: dict[str, ConceptRecord] = {}
    for concept in [*nearest, *recent]:
        if concept.status == "active" and concept.concept_id not in chosen:
            chosen[concept.concept_id] = concept
    return list(chosen.values())[:limit]


async def dedupe_by_similarity(ctx: JobContext, result: IngestionResult, *, has_concepts: bool) -> IngestionResult:
    """`result` with each new concept that is an existing one by the similarity rule pointed at it
    (agents/ingestion/similar.py; threshold ORRERY_CONCEPT_SIMILARITY_THRESHOLD). A user with no concepts yet has
    nothing to match, and costs no embedding."""
    from agents.ingestion.similar import Candidate, match_similar, with_matches

    new = [draft for draft in result.concepts if draft.existing_concept_id is None]
    if not new or not has_concepts:
        return result
    user_id = result.user_id
    try:
        embedder, context = await _context(ctx, user_id)
        vector = await ctx.resource(VECTOR)
        full = await embedder.embed(
            [concept_text(d.name, d.type, d.description) for d in new],
            context=context,
        )
        near = [
            await vector.search(user_id, v, limit=CANDIDATES, entity_types=[SourceEntityType.CONCEPT]) for v in full
        ]
        ids = sorted({hit.source_entity_id for hits in near for hit in hits})
        records = await read_records(ctx.pool, user_id, NodeLabel.CONCEPT, ids)
        active = [records[i] for i in ids if i in records and records[i].status == "active"]
        if not active:
            return result
        names = await embedder.embed(
            [concept_text(d.name, d.type, None) for d in new] + [concept_text(c.name, c.type, None) for c in active],
            context=context,
        )
    except Exception as exc:
        ctx.log.warning("ingest.similarity_unavailable", error_class=type(exc).__name__, error=describe(exc))
        return result
    drafts, existing = names[: len(new)], dict(zip([c.concept_id for c in active], names[len(new) :], strict=True))
    candidates: dict[str, list[Candidate]] = {}
    for draft, vector_of_draft, hits in zip(new, drafts, near, strict=True):
        candidates[draft.key] = [
            Candidate(i, records[i].name, records[i].type, cosine(vector_of_draft, existing[i]))
            for i in (hit.source_entity_id for hit in hits)
            if i in existing
        ]
    matched = match_similar(result.concepts, candidates, ctx.settings.concept_similarity_threshold)
    if matched:
        ctx.log.info(
            "ingest.concepts_matched_by_similarity",
            matched={key: f"{c.name} ({c.score:.2f})" for key, c in matched.items()},
        )
    return result.model_copy(update={"concepts": with_matches(result.concepts, matched)})
