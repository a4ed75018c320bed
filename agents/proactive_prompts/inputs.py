"""What the proactive prompt agent reads: the user's recent material and the prompts already waiting."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.language import ENGLISH, Language


class RecentMemory(BaseModel):
    memory_unit_id: str
    title: str
    content: str
    importance: float | None = None


class EarlierMemory(RecentMemory):
    """A memory unit from the user's whole history, older than the recent ones, that recall found for the current
    themes (the open topics, the cycle's insights, the recent memories): why it came back is shown with it."""

    recalled_for: str


class CycleInsight(BaseModel):
    """A derived artifact of the cycle (an insight summary), shown by title and narrative."""

    artifact_id: str
    title: str
    narrative: str | None = None


class OpenTopic(BaseModel):
    """An unresolved topic of users.next_conversation_context_package."""

    topic: str
    suggested_question: str | None = None


class PromptMaterial(BaseModel):
    """Everything one run shows the model; `slots` is how many new prompts the user's cap still allows."""

    user_id: str
    memory_profile: dict[str, Any] | None = None
    memories: list[RecentMemory] = Field(default_factory=list)
    earlier: list[EarlierMemory] = Field(default_factory=list)
    insights: list[CycleInsight] = Field(default_factory=list)
    open_topics: list[OpenTopic] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    slots: int = 0
    language: Language = ENGLISH
    """What the user reads (core/language.py): the texts the model writes for them are in it."""

    @property
    def has_material(self) -> bool:
        """Whether there is anything to ask about: a profile alone is not news, so it does not count."""
        return bool(self.memories or self.insights or self.open_topics)
