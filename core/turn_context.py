"""The live turn context the web app keeps in Redis under `turn_context:{conversationId}` (seed V9.1).

One model for both sides: store/context.py reads it from Redis, agents read its fields as hints.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TurnContextPackage(BaseModel):
    """The fields Orrery uses; any others the web app adds are kept, not dropped."""

    model_config = ConfigDict(extra="allow")

    suggested_next_focus: str | None = None
    emotional_tone_to_adopt: str | None = None
    flags_for_ingestion: list[str] = Field(default_factory=list)
