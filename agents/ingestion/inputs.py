"""What the ingestion agent reads: one conversation, the live turn context, the profile and the known concepts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class TurnContext(BaseModel):
    """The live turn context's fields ingestion uses (store.context.TurnContextPackage or its dict)."""

    model_config = ConfigDict(extra="allow")

    suggested_next_focus: str | None = None
    emotional_tone_to_adopt: str | None = None
    flags_for_ingestion: list[str] = Field(default_factory=list)


class ExistingConcept(BaseModel):
    """A concept the user already has; the model sees it as a handle, the result carries `concept_id` back."""

    concept_id: str
    name: str
    type: str
    description: str | None = None


class IngestionInput(BaseModel):
    conversation: ConversationInput
    turn_context: TurnContext | None = None
    memory_profile: dict[str, Any] | None = None
    existing_concepts: list[ExistingConcept] = Field(default_factory=list)

    @field_validator("turn_context", mode="before")
    @classmethod
    def _accept_any_model(cls, value: Any) -> Any:
        """Take a TurnContextPackage (or any model) as its fields, so the job needs no conversion."""
        return value.model_dump() if isinstance(value, BaseModel) else value
