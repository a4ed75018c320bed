"""What each entity looks like in the vector store; the text embedded for it comes from core/embedding_texts.py.

Changing a recipe (or a field here) changes `KnowledgeItem.content_hash` of every item of that type, so
reconciliation reports the stored vectors as drifted and `--repair` (or `run.py reembed`) rewrites them.
"""

from __future__ import annotations

from core.embedding_texts import artifact_text, concept_text, memory_unit_text
from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.repos.memory_units import MemoryUnitRecord
from store.vector.base import KnowledgeItem, SourceEntityType


def memory_unit_item(record: MemoryUnitRecord) -> KnowledgeItem:
    """A memory unit: title + content; dated by when it happened (creation_ts)."""
    return KnowledgeItem(
        user_id=record.user_id,
        source_entity_type=SourceEntityType.MEMORY_UNIT,
        source_entity_id=record.muid,
        title=record.title,
        text_content=record.content,
        embedding_text=memory_unit_text(record.title, record.content),
        created_at=record.creation_ts,
        importance_score=record.importance_score,
    )


def concept_item(record: ConceptRecord) -> KnowledgeItem:
    """A concept: "name (type)" + description, so "Emma (person)" and "Emma (place)" embed apart; type as a tag."""
    return KnowledgeItem(
        user_id=record.user_id,
        source_entity_type=SourceEntityType.CONCEPT,
        source_entity_id=record.concept_id,
        title=record.name,
        text_content=record.description or "",
        embedding_text=concept_text(record.name, record.type, record.description),
        created_at=record.created_at,
        importance_score=record.salience,
        tags=(record.type,),
    )


def derived_artifact_item(record: DerivedArtifactRecord) -> KnowledgeItem:
    """A derived artifact (insight, trophy, goal achievement story, cycle report): title + narrative; its artifact
    type as a tag."""
    return KnowledgeItem(
        user_id=record.user_id,
        source_entity_type=SourceEntityType.DERIVED_ARTIFACT,
        source_entity_id=record.artifact_id,
        title=record.title,
        text_content=record.content_narrative or "",
        embedding_text=artifact_text(record.title, record.content_narrative),
        created_at=record.created_at,
        tags=(record.artifact_type,),
    )
