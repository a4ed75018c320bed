"""The embedding-similarity rule of concept deduplication, pure: a new concept is an existing one when they share a
type and their embedded texts are at least `threshold` similar (cosine).

It adds to the two rules the write already applies (the model naming an existing handle, and the normalized name +
type): "my sister Emma" finds "Emma", "stress at work" finds "work stress". The threshold comes from
bench/bench_dedupe.py's labelled mentions (ORRERY_CONCEPT_SIMILARITY_THRESHOLD); nicknames ("Bob" for "Robert")
are beyond what an embedding knows and stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.ingestion import ConceptDraft
from core.vocabulary import normalize_concept_type


@dataclass(frozen=True)
class Candidate:
    """An existing concept near a new one: its id, name, type and cosine similarity to the new one's text."""

    concept_id: str
    name: str
    type: str
    score: float


def same_concept(kind: str, candidate: Candidate, threshold: float) -> bool:
    return normalize_concept_type(kind) == normalize_concept_type(candidate.type) and candidate.score >= threshold


def match_similar(
    drafts: Sequence[ConceptDraft], candidates: Mapping[str, Sequence[Candidate]], threshold: float
) -> dict[str, Candidate]:
    """draft key -> the existing concept it is, for new drafts (no existing id) whose best same-type candidate
    reaches the threshold; two drafts never take the same concept (the second keeps its own)."""
    taken: set[str] = {draft.existing_concept_id for draft in drafts if draft.existing_concept_id}
    matched: dict[str, Candidate] = {}
    for draft in drafts:
        if draft.existing_concept_id is not None:
            continue
        ranked = sorted(candidates.get(draft.key, ()), key=lambda c: (-c.score, c.concept_id))
        best = next((c for c in ranked if same_concept(draft.type, c, threshold) and c.concept_id not in taken), None)
        if best is not None:
            matched[draft.key] = best
            taken.add(best.concept_id)
    return matched


def with_matches(drafts: Sequence[ConceptDraft], matched: Mapping[str, Candidate]) -> list[ConceptDraft]:
    """The drafts with `existing_concept_id` set where a similar concept was found."""
    return [
        draft.model_copy(update={"existing_concept_id": matched[draft.key].concept_id})
        if draft.key in matched
        else draft
        for draft in drafts
    ]
