"""What store/sync.py reads a derived store should hold: an artifact's DERIVED_FROM sources, pure."""

from __future__ import annotations

from datetime import UTC, datetime

from core.vocabulary import NodeLabel
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.sync import artifact_sources


def artifact(content_data: object, mu: str | None = "m1", concept: str | None = None) -> DerivedArtifactRecord:
    return DerivedArtifactRecord.model_validate(
        {
            "artifact_id": "a1",
            "user_id": "u1",
            "artifact_type": "insight_summary",
            "title": "t",
            "content_narrative": None,
            "content_data": content_data,
            "source_memory_unit_id": mu,
            "source_concept_id": concept,
            "generated_by_agent": "InsightAgent",
            "created_at": datetime.now(UTC),
        }
    )


def test_every_source_an_artifact_rests_on_once() -> None:
    full = artifact({"source_memory_unit_ids": ["m1", "m2"], "source_concept_ids": ["c1", 7]}, concept="c1")
    assert artifact_sources(full) == [
        (NodeLabel.MEMORY_UNIT, "m1"),
        (NodeLabel.MEMORY_UNIT, "m2"),
        (NodeLabel.CONCEPT, "c1"),
    ]
    assert artifact_sources(artifact(None)) == [(NodeLabel.MEMORY_UNIT, "m1")]
    assert artifact_sources(artifact({"source_concept_ids": "c9"}, mu=None)) == []  # not a list: ignored
