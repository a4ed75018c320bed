"""What the insight cycle hands between the store and the agent: the cycle's material in, the resolved result out.

Both sides share these records: store/insight_material.py reads an InsightMaterial, agents/insight builds an
InsightResult from it, store/insight_writes.py writes that in one transaction. Everything here carries database
ids; the model only ever sees handles (agents/insight/handles.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.cycle import Cycle
from core.ingestion import ForwardContext
from core.vocabulary import AgentName, ArtifactType, EntityKind, GrowthDimension

GENERATED_BY = AgentName.INSIGHT.value
"""`derived_artifacts.generated_by_agent` and `growth_events.source` of everything the insight cycle writes."""

INSIGHT_NAMESPACE = uuid.UUID("3b8f2a64-4c1e-4f0e-9d7a-6a0f5c2e8b41")


def insight_row_id(cycle: Cycle, key: str) -> str:
    """The id of a row the insight of this cycle writes (artifact, growth event, new community): the same on every
    run of the same cycle, so a rerun finds its rows instead of adding twins."""
    return cycle.row_id(key, INSIGHT_NAMESPACE)


def summary_artifact_id(cycle: Cycle) -> str:
    """The cycle's insight_summary artifact: its existence means the insight of this cycle is written."""
    return insight_row_id(cycle, "artifact:insight_summary")


def goal_story_id(user_id: str, goal_concept_id: str) -> str:
    """The goal achievement story of this goal: one per goal for ever, so its id depends on the goal, not the cycle;
    a later cycle's story of the same goal finds it and is not written."""
    return str(uuid.uuid5(INSIGHT_NAMESPACE, f"{user_id}:goal_achievement_story:{goal_concept_id}"))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- the material -------------------------------------------------------------------------------------------------


class ConversationDigest(_Frozen):
    conversation_id: str
    title: str | None
    summary: str | None
    importance: float | None
    start_time: datetime


class MemoryDigest(_Frozen):
    muid: str
    title: str
    content: str
    importance: float | None
    sentiment: float | None
    creation_ts: datetime
    source_conversation_id: str | None


class EarlierMemory(_Frozen):
    """A memory unit from the user's whole history (not the cycle's) that recall found relevant to the cycle's themes:
    older memories that matter reach the model, and its artifacts may cite them."""

    memory: MemoryDigest
    recalled_for: str
    """The theme it answered, or how it came back (core/recall.py's reason, first part)."""


class ConceptDigest(_Frozen):
    concept_id: str
    name: str
    type: str
    description: str | None
    salience: float | None
    mentions: int
    """Memory units of the cycle related to it."""
    degree: int = 0
    """Its neighbours in the whole concept graph (filled in from the detection graph)."""
    story_told: bool = False
    """A goal whose achievement story is written already (the model is told, so it writes no second one)."""


class GrowthTotal(_Frozen):
    dim_key: GrowthDimension
    total: float
    events: int


class ExistingCommunity(_Frozen):
    community_id: str
    name: str
    description: str | None
    core_concept_ids: tuple[str, ...]


class ConceptLink(_Frozen):
    """An undirected, weighted edge of the user's concept graph (a < b)."""

    a: str
    b: str
    weight: float


class InsightMaterial(_Frozen):
    """The cycle as the store compiled it: bounded by the window and LIMITs, never the whole history."""

    user_id: str
    cycle_start: datetime
    """The cycle's name (last_cycle_started_at, or created_at for a user who never had one)."""
    window_start: datetime
    """Material from here on: last_cycle_started_at, or one cycle length back for a user's first cycle."""
    window_end: datetime
    active_conversations: int
    """Processed conversations that left memory in the window: the activity `cycle_min_conversations` counts."""
    conversations: tuple[ConversationDigest, ...] = ()
    memory_units: tuple[MemoryDigest, ...] = ()
    concepts: tuple[ConceptDigest, ...] = ()
    growth: tuple[GrowthTotal, ...] = ()
    memory_profile: dict[str, Any] | None = None
    knowledge_graph_schema: dict[str, Any] | None = None
    next_context: dict[str, Any] | None = None
    concepts_created_in_cycle: int = 0

    @property
    def cycle(self) -> Cycle:
        return Cycle.of(self.user_id, self.cycle_start)

    def is_empty(self, min_conversations: int) -> bool:
        """Nothing worth an LLM call: too little activity, or no memory in the window at all."""
        return self.active_conversations < min_conversations or not self.memory_units

    @property
    def latest_conversation(self) -> ConversationDigest | None:
        return max(self.conversations, key=lambda c: (c.start_time, c.conversation_id), default=None)


class CommunityCandidate(_Frozen):
    """A community the detection found, matched to an existing one when their members barely differ."""

    key: str
    concept_ids: tuple[str, ...]
    top_members: tuple[str, ...]
    """Names of its best-connected members, for the model to name it by."""
    existing: ExistingCommunity | None = None
    fallback_name: str


# --- the result ---------------------------------------------------------------------------------------------------


class InsightArtifactType(StrEnum):
    """The kind of artifact the model writes; stored as content_data.insight_kind of the seed's type (stored_type)."""

    INSIGHT_SUMMARY = "insight_summary"
    PATTERN = "pattern"
    BREAKTHROUGH = "breakthrough"
    TENSION = "tension"
    GOAL_STORY = "goal_achievement_story"

    @property
    def stored_type(self) -> ArtifactType:
        """derived_artifacts.artifact_type: a breakthrough is a growth milestone, the seed's trophy; the story of a
        goal reached is the seed's goal_achievement_story; the others are insights (insight_summary)."""
        if self is InsightArtifactType.BREAKTHROUGH:
            return ArtifactType.TROPHY
        if self is InsightArtifactType.GOAL_STORY:
            return ArtifactType.GOAL_ACHIEVEMENT_STORY
        return ArtifactType.INSIGHT_SUMMARY


class ArtifactDraft(_Frozen):
    key: str
    """"insight_summary" for the cycle's summary, "artifact:N" for the others: part of the row's deterministic id."""
    artifact_type: InsightArtifactType
    title: str
    narrative: str
    memory_unit_ids: tuple[str, ...]
    concept_ids: tuple[str, ...]
    goal_concept_id: str | None = None
    """The goal a goal achievement story tells of (also first in concept_ids); None for every other kind."""

    def artifact_id(self, cycle: Cycle) -> str:
        """Its row's id: the cycle's summary, the goal's one story, or the cycle's N-th other artifact."""
        if self.goal_concept_id is not None:
            return goal_story_id(cycle.user_id, self.goal_concept_id)
        if self.key == "insight_summary":
            return summary_artifact_id(cycle)
        return insight_row_id(cycle, f"artifact:{self.key}")


class MergeDraft(_Frozen):
    primary_id: str
    secondary_ids: tuple[str, ...]
    reason: str


class InsightGrowthDraft(_Frozen):
    key: str
    entity_id: str
    entity_kind: EntityKind
    dim_key: GrowthDimension
    delta: float
    rationale: str


class CommunityDraft(_Frozen):
    key: str
    existing_id: str | None
    concept_ids: tuple[str, ...]
    name: str
    description: str | None


class InsightStatus(StrEnum):
    WRITTEN = "written"
    EMPTY = "empty"


class InsightResult(BaseModel):
    """Everything one cycle's insight yields, references resolved to ids; written in one transaction."""

    user_id: str
    cycle_start: datetime
    status: InsightStatus
    memory_profile: dict[str, Any] | None = None
    knowledge_graph_schema: dict[str, Any] | None = None
    artifacts: list[ArtifactDraft] = Field(default_factory=list)
    merges: list[MergeDraft] = Field(default_factory=list)
    growth_events: list[InsightGrowthDraft] = Field(default_factory=list)
    communities: list[CommunityDraft] = Field(default_factory=list)
    detection_method: str | None = None
    next_context: ForwardContext | None = None
    latest_conversation: ConversationDigest | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str
    prompt_name: str
    prompt_version: str

    @property
    def cycle(self) -> Cycle:
        return Cycle.of(self.user_id, self.cycle_start)
