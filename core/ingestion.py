"""What ingestion hands from the agent to the store: the resolved result of one conversation.

Both sides share these records: agents/ingestion builds an IngestionResult, store/ingestion_writes.py writes it in
one transaction. ForwardContext is also what becomes users.next_conversation_context_package.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from core.llm_records import LLMUsage
from core.revisions import RevisionKind
from core.vocabulary import EntityKind, GrowthDimension, RelationshipType, StorableModel


class UnresolvedTopic(StorableModel):
    topic: str
    suggested_question: str


class ForwardContext(StorableModel):
    """What the companion should know next time (becomes next_conversation_context_package)."""

    proactive_greeting: str
    unresolved_topics: list[UnresolvedTopic]
    suggested_focus: str | None


class IngestionStatus(StrEnum):
    EXTRACTED = "extracted"
    EMPTY = "empty"  # no messages with any text: nothing was sent to the model
    NO_USER_MESSAGES = "no_user_messages"  # only the companion spoke: nothing about the user to remember


class EntityRef(BaseModel):
    """A memory unit or concept of this result, by its key."""

    model_config = ConfigDict(frozen=True)

    kind: EntityKind
    key: str


class MemoryUnitDraft(BaseModel):
    """A memory unit to create, or (`revises` set) what the conversation says of an earlier one it retells or
    updates: the store revises that unit (core/revisions.py) instead of creating a second one."""

    key: str
    title: str
    content: str
    creation_ts: datetime
    importance_score: float
    sentiment_score: float
    attachment_media_id: str | None = None
    """The attachment (media_items.media_id) the memory comes from, when the model cited one it was shown."""
    revises: str | None = None
    """The earlier memory unit's id (the model named it by the handle it was shown)."""
    revision: RevisionKind | None = None
    """RETOLD or UPDATED when `revises` is set."""


class ConceptDraft(BaseModel):
    """A concept to reuse (`existing_concept_id` set) or create (by `normalized_name` + `type`).

    A reused concept's blank description is filled with `description`; with `revise_description` (the model named
    the concept by its handle and gave a description: what is true of it changed) a different description replaces
    the current one, which its revision keeps."""

    key: str
    name: str
    normalized_name: str
    type: str
    description: str | None
    existing_concept_id: str | None
    revise_description: bool = False


class RelationshipDraft(BaseModel):
    source: EntityRef
    target: EntityRef
    relationship_type: RelationshipType
    strength: float
    description: str


class GrowthEventDraft(BaseModel):
    """delta is in -1..1: positive is progress in the dimension, negative a setback (see prompts/ingestion.j2)."""

    about: EntityRef
    dim_key: GrowthDimension
    delta: float
    rationale: str


class IngestionResult(BaseModel):
    """Everything one conversation yields, references resolved, no duplicates; written in one transaction."""

    conversation_id: str
    user_id: str
    status: IngestionStatus
    title: str | None = None
    context_summary: str | None = None
    importance_score: float | None = None
    memory_units: list[MemoryUnitDraft] = Field(default_factory=list)
    concepts: list[ConceptDraft] = Field(default_factory=list)
    relationships: list[RelationshipDraft] = Field(default_factory=list)
    growth_events: list[GrowthEventDraft] = Field(default_factory=list)
    forward_context: ForwardContext | None = None
    windows: int = 0
    earlier_memories_shown: int = 0
    """How many earlier memory units the model was shown (it may retell or update only those)."""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str
    prompt_name: str
    prompt_version: str

    @property
    def usage(self) -> LLMUsage:
        return LLMUsage(self.llm_calls, self.prompt_tokens, self.completion_tokens)

    def memory_unit(self, key: str) -> MemoryUnitDraft:
        for unit in self.memory_units:
            if unit.key == key:
                return unit
        raise KeyError(f"no memory unit {key!r} in the result of conversation {self.conversation_id}")

    def concept(self, key: str) -> ConceptDraft:
        for concept in self.concepts:
            if concept.key == key:
                return concept
        raise KeyError(f"no concept {key!r} in the result of conversation {self.conversation_id}")
