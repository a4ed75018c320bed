"""The one place that says what each entity looks like in the vector store, and the item ids and hashes built on it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.repos.memory_units import MemoryUnitRecord
from store.vector.base import KnowledgeItem, SourceEntityType, item_uuid
from store.vector.texts import concept_item, derived_artifact_item, memory_unit_item

AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
ID = "00000000-0000-4000-8000-000000000001"


def test_a_memory_unit_embeds_title_and_content_dated_when_it_happened() -> None:
    record = MemoryUnitRecord.model_validate(
        {
            "muid": ID,
            "user_id": "u",
            "title": "Emma's bakery",
            "content": " It opened today. ",
            "creation_ts": AT,
            "ingestion_ts": datetime(2024, 6, 1, tzinfo=UTC),
            "last_modified_ts": AT,
            "importance_score": 7.0,
            "sentiment_score": None,
            "source_conversation_id": None,
            "metadata": {},
        }
    )
    item = memory_unit_item(record)
    assert (item.source_entity_type, item.source_entity_id, item.user_id) == (SourceEntityType.MEMORY_UNIT, ID, "u")
    assert item.embedding_text == "Emma's bakery\nIt opened today."
    assert (item.created_at, item.importance_score, item.tags) == (AT, 7.0, ())


def test_a_concept_embeds_name_type_and_description_and_is_tagged_with_its_type() -> None:
    record = ConceptRecord.model_validate(
        {
            "concept_id": ID,
            "user_id": "u",
            "name": "Emma",
            "type": "person",
            "description": "younger sister",
            "status": "active",
            "salience": 0.8,
            "created_at": AT,
            "last_updated_ts": AT,
            "community_id": None,
            "merged_into_concept_id": None,
            "metadata": {},
        }
    )
    item = concept_item(record)
    assert (item.title, item.text_content, item.embedding_text) == (
        "Emma",
        "younger sister",
        "Emma (person)\nyounger sister",
    )
    assert (item.tags, item.importance_score) == (("person",), 0.8)
    bare = concept_item(record.model_copy(update={"description": None}))
    assert (bare.text_content, bare.embedding_text) == ("", "Emma (person)")


def test_a_derived_artifact_embeds_title_and_narrative() -> None:
    record = DerivedArtifactRecord.model_validate(
        {
            "artifact_id": ID,
            "user_id": "u",
            "artifact_type": "insight_summary",
            "title": "Runs calm you",
            "content_narrative": "Mornings with a run read calmer.",
            "content_data": {},
            "source_memory_unit_id": None,
            "source_concept_id": None,
            "generated_by_agent": "insight",
            "created_at": AT,
        }
    )
    item = derived_artifact_item(record)
    assert item.embedding_text == "Runs calm you\nMornings with a run read calmer."
    assert (item.source_entity_type, item.tags) == (SourceEntityType.DERIVED_ARTIFACT, ("insight_summary",))


def test_item_ids_never_change_and_belong_to_one_user() -> None:
    """Pinned: stored objects in every deployment are keyed on these; a change would duplicate every item."""
    assert str(item_uuid("user-1", SourceEntityType.CONCEPT, ID)) == "06727e84-86d8-5c9c-9d81-f54cdd77fd5c"
    assert item_uuid("user-2", SourceEntityType.CONCEPT, ID) != item_uuid("user-1", SourceEntityType.CONCEPT, ID)
    assert item_uuid("user-1", SourceEntityType.MEMORY_UNIT, ID) != item_uuid("user-1", SourceEntityType.CONCEPT, ID)


def test_the_content_hash_sees_every_stored_field_and_the_recipe() -> None:
    item = KnowledgeItem("u", SourceEntityType.CONCEPT, ID, "Emma", "sister", "Emma (person)\nsister", AT, 0.5, ("p",))
    changes: list[dict[str, object]] = [
        {"title": "Emma B"},
        {"text_content": "sibling"},
        {"embedding_text": "Emma\nsister"},
        {"created_at": datetime(2024, 5, 1, 9, 31, tzinfo=UTC)},
        {"importance_score": 0.6},
        {"tags": ("q",)},
        {"source_entity_type": SourceEntityType.MEMORY_UNIT},
    ]
    hashes = {replace(item, **change).content_hash for change in changes}  # type: ignore[arg-type]
    assert len(hashes) == len(changes) and item.content_hash not in hashes
    same_instant = replace(item, created_at=AT.astimezone(timezone(timedelta(hours=2))))
    assert same_instant.content_hash == item.content_hash  # one instant, whatever the zone


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source_entity_id": "mu-1"}, "source_entity_id must be a UUID"),
        ({"created_at": datetime(2024, 5, 1)}, "created_at must be timezone-aware"),
        ({"embedding_text": "  "}, "nothing to embed"),
        ({"user_id": ""}, "user_id is empty"),
    ],
)
def test_items_that_no_store_could_hold_are_refused_with_their_name(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "user_id": "u",
        "source_entity_type": SourceEntityType.MEMORY_UNIT,
        "source_entity_id": ID,
        "title": "t",
        "text_content": "c",
        "embedding_text": "t\nc",
        "created_at": AT,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        KnowledgeItem(**fields)  # type: ignore[arg-type]
