"""What the cycle report agent reads: the cycle's windows, counts, growth sums and a few top rows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.language import ENGLISH, Language


class GrowthSums(BaseModel):
    """One dimension's summed growth deltas in the reported cycle and the one before, and the cycle's event count."""

    this_cycle: float = 0.0
    previous_cycle: float = 0.0
    events: int = 0


class TopConcept(BaseModel):
    concept_id: str
    name: str
    type: str
    mentions: int


class Highlight(BaseModel):
    memory_unit_id: str
    title: str
    content: str
    importance: float | None = None


class CycleInsight(BaseModel):
    artifact_id: str
    artifact_type: str
    title: str
    narrative: str | None = None


COUNTED = ("conversations", "memory_units", "concepts_created", "growth_events", "insights", "prompts")
"""The counts a report carries (store/cycle_report_writes.py reads them)."""


class CycleMaterial(BaseModel):
    user_id: str
    user_name: str | None = None
    previous_start: datetime
    cycle_start: datetime
    cycle_end: datetime
    growth: dict[str, GrowthSums] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    top_concepts: list[TopConcept] = Field(default_factory=list)
    highlights: list[Highlight] = Field(default_factory=list)
    insights: list[CycleInsight] = Field(default_factory=list)
    language: Language = ENGLISH
    """What the user reads (core/language.py): the texts the model writes for them are in it."""

    @property
    def is_empty(self) -> bool:
        """No conversation, memory, growth or insight in the cycle: nothing for a narrative to be about."""
        activity = ("conversations", "memory_units", "growth_events", "insights")
        return not any(self.counts.get(name, 0) for name in activity)
