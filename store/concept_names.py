"""Concept name vectors (runtime.concept_name_vectors, migration 0012): the embedding of each active concept's
"name (type)", for ingestion's similarity rule of concept deduplication (agents/ingestion/similar.py).

Why a table of its own: the rule compares names, and the vector store holds each concept's name and description
embedded together, which finds too few of the true merges to judge by (bench/bench_dedupe.py); embedding the user's
existing concepts' names again in every ingestion was most of the rule's cost. So the vector dispatcher keeps one
vector per active concept here, in step with Postgres through the outbox (jobs/sync.py), and an ingestion embeds
only its new concepts' names and asks for the nearest existing ones of the same type, one statement for all.
It is in Postgres (pgvector) whatever the vector store is: one user's concepts of one type are few and are
compared exactly. A concept committed less than a dispatcher's lag ago is not here yet; the write's own rules
(the model naming a handle, the same normalized name and type) still apply to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.embedding_texts import concept_text
from core.vocabulary import normalize_concept_type
from store.postgres import Executor
from store.repos.concepts import ConceptRecord
from store.vector.pgvector import vector_literal


@dataclass(frozen=True)
class ConceptName:
    """What is embedded for one active concept: its id, its normalized type, and the text (core/embedding_texts.py)."""

    concept_id: str
    concept_type: str
    text: str


def concept_name(record: ConceptRecord) -> ConceptName:
    """The name side of a concept, as the similarity rule embeds a new one: "name (type)", no description."""
    text = concept_text(record.name, record.type, None)
    return ConceptName(record.concept_id, normalize_concept_type(record.type), text)


@dataclass(frozen=True)
class NameMatch:
    """An existing active concept near a new name: its id, current name and type, and cosine similarity."""

    concept_id: str
    name: str
    type: str
    score: float


async def upsert(
    db: Executor, user_id: str, model_version: str, names: Sequence[tuple[ConceptName, Sequence[float]]]
) -> None:
    """Store each name's vector (replacing the concept's previous one)."""
    if not names:
        return
    await db.execute(
        "INSERT INTO runtime.concept_name_vectors AS v "
        "(user_id, concept_id, concept_type, name_text, embedding_model_version, embedding) "
        "SELECT $1, n.concept_id, n.concept_type, n.name_text, $2, n.embedding::vector "
        "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) "
        "AS n(concept_id, concept_type, name_text, embedding) "
        "ON CONFLICT (user_id, concept_id) DO UPDATE SET concept_type = EXCLUDED.concept_type, "
        "name_text = EXCLUDED.name_text, embedding_model_version = EXCLUDED.embedding_model_version, "
        "embedding = EXCLUDED.embedding, updated_at = now()",
        user_id,
        model_version,
        [name.concept_id for name, _ in names],
        [name.concept_type for name, _ in names],
        [name.text for name, _ in names],
        [vector_literal(vector) for _, vector in names],
    )


async def stored_texts(db: Executor, user_id: str, model_version: str, concept_ids: Iterable[str]) -> dict[str, str]:
    """concept id → the text its stored name vector was made from, for those of `concept_ids` with a vector of this
    model: a name whose text did not change needs no new vector (a concept is synced again for many other reasons)."""
    ids = sorted(set(concept_ids))
    if not ids:
        return {}
    rows = await db.fetch(
        "SELECT concept_id, name_text FROM runtime.concept_name_vectors WHERE user_id = $1 "
        "AND embedding_model_version = $2 AND concept_id = ANY($3::text[])",
        user_id,
        model_version,
        ids,
    )
    return {row["concept_id"]: row["name_text"] for row in rows}


async def delete(db: Executor, user_id: str, concept_ids: Iterable[str]) -> None:
    """Forget the vectors of concepts that are gone, merged or archived."""
    ids = list(concept_ids)
    if ids:
        await db.execute(
            "DELETE FROM runtime.concept_name_vectors WHERE user_id = $1 AND concept_id = ANY($2::text[])", user_id, ids
        )


async def nearest(
    db: Executor,
    user_id: str,
    model_version: str,
    queries: Sequence[tuple[Sequence[float], str]],
    *,
    limit: int,
) -> list[list[NameMatch]]:
    """For each (vector of a new name, its type), the user's `limit` active concepts of that (normalized) type whose
    stored name vectors are nearest, best first; one statement for every query."""
    if not queries:
        return []
    rows = await db.fetch(
        "SELECT q.ord, m.concept_id, m.name, m.type, m.score "
        "FROM unnest($3::text[]::vector[], $4::text[]) WITH ORDINALITY AS q(embedding, concept_type, ord) "
        "CROSS JOIN LATERAL ("
        "  SELECT v.concept_id, c.name, c.type, 1 - (v.embedding <=> q.embedding) AS score "
        "  FROM runtime.concept_name_vectors v "
        "  JOIN concepts c ON c.concept_id = v.concept_id AND c.user_id = v.user_id AND c.status = 'active' "
        "  WHERE v.user_id = $1 AND v.embedding_model_version = $2 AND v.concept_type = q.concept_type "
        "  ORDER BY v.embedding <=> q.embedding, v.concept_id LIMIT $5"
        ") AS m ORDER BY q.ord, m.score DESC, m.concept_id",
        user_id,
        model_version,
        [vector_literal(vector) for vector, _ in queries],
        [normalize_concept_type(kind) for _, kind in queries],
        limit,
    )
    found: list[list[NameMatch]] = [[] for _ in queries]
    for row in rows:
        found[row["ord"] - 1].append(NameMatch(row["concept_id"], row["name"], row["type"], float(row["score"])))
    return found
