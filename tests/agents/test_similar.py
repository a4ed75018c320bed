"""The similarity rule of concept deduplication (agents/ingestion/similar.py), pure."""

from __future__ import annotations

from agents.ingestion.similar import Candidate, match_similar, with_matches
from core.ingestion import ConceptDraft


def draft(key: str, name: str, kind: str, existing: str | None = None) -> ConceptDraft:
    return ConceptDraft(
        key=key, name=name, normalized_name=name.lower(), type=kind, description=None, existing_concept_id=existing
    )


def test_a_new_concept_takes_the_best_same_type_candidate_at_or_above_the_threshold() -> None:
    drafts = [draft("c1", "my sister Emma", "Person"), draft("c2", "Lisbon trip", "event"), draft("c3", "x", "p", "k9")]
    candidates = {
        "c1": [Candidate("k1", "Emma", "person", 0.82), Candidate("k2", "Emma's husband Tom", "person", 0.73)],
        "c2": [Candidate("k3", "Lisbon", "place", 0.95)],  # another type: never the same concept
        "c3": [Candidate("k1", "Emma", "person", 0.99)],  # already an existing concept: left alone
    }
    matched = match_similar(drafts, candidates, 0.8)
    assert {key: c.concept_id for key, c in matched.items()} == {"c1": "k1"}
    assert [d.existing_concept_id for d in with_matches(drafts, matched)] == ["k1", None, "k9"]
    assert match_similar(drafts, candidates, 0.83) == {}


def test_two_new_concepts_never_take_the_same_existing_one() -> None:
    drafts = [draft("c1", "Dad", "person"), draft("c2", "my father", "person"), draft("c3", "papa", "person", "k1")]
    candidates = {
        "c1": [Candidate("k1", "Father", "person", 0.9), Candidate("k2", "Grandpa", "person", 0.85)],
        "c2": [Candidate("k2", "Grandpa", "person", 0.81)],
    }
    matched = match_similar(drafts, candidates, 0.8)
    assert {key: c.concept_id for key, c in matched.items()} == {"c1": "k2"}  # k1 belongs to c3; c2 then lost k2
