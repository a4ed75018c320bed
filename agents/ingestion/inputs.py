"""What the ingestion agent reads: one conversation, the live turn context, the profile, the known concepts and the
earlier memories nearest to the conversation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from core.language import ENGLISH, Language
from core.turn_context import TurnContextPackage


class ConversationMessage(BaseModel):
    role: str
    content: str
    timestamp: datetime


class ConversationInput(BaseModel):
    id: str
    user_id: str
    title: str | None = None
    start_time: datetime
    messages: list[ConversationMessage] = Field(default_factory=list)


class ExistingConcept(BaseModel):
    """A concept the user already has; the model sees it as a handle, the result carries `concept_id` back."""

    concept_id: str
    name: str
    type: str
    description: str | None = None


class Attachment(BaseModel):
    """An attachment of the conversation's messages (media_items), as the model sees it: what was read from it, or
    why nothing was (`unread`). The model sees it as a handle ("a1"); the result carries `media_id` back."""

    media_id: str
    kind: str
    filename: str | None = None
    message: int | None = Field(None, description="The number of the message it is attached to (1 = the first)")
    text: str | None = None
    unread: str | None = None


class EarlierMemory(BaseModel):
    """A memory unit from one of the user's earlier conversations, near this one: the model sees it as a handle
    ("p1") and may say a new memory retells or updates it; the result carries `memory_unit_id` back."""

    memory_unit_id: str
    title: str
    content: str
    creation_ts: datetime


class IngestionInput(BaseModel):
    conversation: ConversationInput
    turn_context: TurnContextPackage | None = None
    memory_profile: dict[str, Any] | None = None
    existing_concepts: list[ExistingConcept] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)
    language: Language = ENGLISH
    """What the user reads (core/language.py): the texts the model writes for them are in it."""
    earlier_memories: list[EarlierMemory] = Field(default_factory=list)
    """Nearest first; the agent shows as many as its token budget holds."""

    @field_validator("turn_context", mode="before")
    @classmethod
    def _accept_any_model(cls, value: Any) -> Any:
        """Take a TurnContextPackage (or any model) as its fields, so the job needs no conversion."""
        return value.model_dump() if isinstance(value, BaseModel) else value
