"""The memory vocabulary every layer speaks: relationship types, growth dimensions, entity kinds, concept names.

Agents put these words in prompts and validate answers against them; stores write them into rows, graph
relationship types and vector filters; the CLI prints them. A word added here is added everywhere at once.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

EARLIEST_YEAR, LATEST_YEAR = 1900, 2200
"""creation_ts must fall in these years (in UTC): anything else is a model's mistake, and years near 1 or 9999
overflow when converted to UTC, so the write would fail on every try."""


class RelationshipType(StrEnum):
    RELATED_TO = "RELATED_TO"
    IS_ABOUT = "IS_ABOUT"  # memory unit -> each concept it is about
    IS_A_TYPE_OF = "IS_A_TYPE_OF"
    IS_PART_OF = "IS_PART_OF"
    CAUSES = "CAUSES"
    INFLUENCES = "INFLUENCES"
    ENABLES = "ENABLES"
    PREVENTS = "PREVENTS"
    CONTRIBUTES_TO = "CONTRIBUTES_TO"
    PRECEDES = "PRECEDES"
    CO_OCCURS_WITH = "CO_OCCURS_WITH"
    IS_SIMILAR_TO = "IS_SIMILAR_TO"
    IS_OPPOSITE_OF = "IS_OPPOSITE_OF"
    INSPIRES = "INSPIRES"
    SUPPORTS_VALUE = "SUPPORTS_VALUE"
    EXEMPLIFIES_TRAIT = "EXEMPLIFIES_TRAIT"
    IS_MILESTONE_FOR = "IS_MILESTONE_FOR"


class StructuralRelationshipType(StrEnum):
    """Graph relationships that follow from the rows themselves, not from an agent's reading of a conversation."""

    MENTIONS = "MENTIONS"  # MemoryUnit -> Concept
    BELONGS_TO_COMMUNITY = "BELONGS_TO_COMMUNITY"  # Concept -> Community
    DERIVED_FROM = "DERIVED_FROM"  # DerivedArtifact -> its sources (MemoryUnit, Concept, DerivedArtifact)
    HIGHLIGHTS = "HIGHLIGHTS"  # DerivedArtifact -> the MemoryUnits and Concepts its content_data cites
    REVISES = "REVISES"  # Revision -> the MemoryUnit or Concept it revised (public.memory_revisions)
    AUTHORED_BY = "AUTHORED_BY"  # MemoryUnit -> the User whose memory it is
    MERGED_INTO = "MERGED_INTO"  # Concept -> the concept it was merged into (concepts.merged_into_concept_id)


class NodeLabel(StrEnum):
    """The graph's node labels: the seed's (000, V9.7, Neo4j schema) and Revision, a memory unit's or concept's
    revision (core/revisions.py), which keeps the memory's history in the graph as in Postgres."""

    USER = "User"
    MEMORY_UNIT = "MemoryUnit"
    CONCEPT = "Concept"
    DERIVED_ARTIFACT = "DerivedArtifact"
    COMMUNITY = "Community"
    REVISION = "Revision"


class GrowthDimension(StrEnum):
    KNOW_SELF = "know_self"
    KNOW_WORLD = "know_world"
    ACT_SELF = "act_self"
    ACT_WORLD = "act_world"
    SHOW_SELF = "show_self"
    SHOW_WORLD = "show_world"


class EntityKind(StrEnum):
    """Matches the source_type/target_type values of runtime.knowledge_edges and GrowthEvent.entity_type."""

    MEMORY_UNIT = "MemoryUnit"
    CONCEPT = "Concept"


class AgentName(StrEnum):
    """The agents by the names Orrery writes into rows: growth_events.source, derived_artifacts.generated_by_agent,
    proactive_prompts.source_agent (docs/contract.md lists where each appears)."""

    INGESTION = "IngestionAgent"
    INSIGHT = "InsightAgent"
    PROACTIVE_PROMPTS = "ProactivePromptAgent"
    CYCLE_REPORT = "CycleReportAgent"
    MEDIA = "MediaAgent"


GROWTH_SOURCES = (AgentName.INGESTION, AgentName.INSIGHT)
"""The agents that write growth events (growth_events.source)."""


class ArtifactType(StrEnum):
    """derived_artifacts.artifact_type, the seed's values (V9.7; V9.1 adds goal_achievement_story, the insight's story
    of a goal the user reached), and the card_type of an artifact's card. An insight's finer kind (pattern, tension,
    breakthrough, goal_achievement_story) is in content_data.insight_kind."""

    INSIGHT_SUMMARY = "insight_summary"
    CYCLE_REPORT = "cycle_report"
    TROPHY = "trophy"
    GOAL_ACHIEVEMENT_STORY = "goal_achievement_story"


GOAL_CONCEPT_TYPE = "goal"
"""concepts.type of what the user is working towards (ingestion's prompt names it): the concepts a goal achievement
story can be about (compared through normalize_concept_type)."""


class PromptStatus(StrEnum):
    """proactive_prompts.status. Orrery writes `pending` (a new prompt) and `expired` (nobody delivered it in time);
    the web app writes `delivered` (with delivered_at, when the companion asks it) and `answered` (the user replied).
    docs/contract.md says which statement the web app runs for each."""

    PENDING = "pending"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    EXPIRED = "expired"


_PUNCTUATION_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalize_concept_name(name: str) -> str:
    """The identity of a concept name: NFKC, casefolded, punctuation and whitespace collapsed to single spaces.

    "Morning Runs", "morning  runs" and "Morning-runs!" are one concept. Plurals are deliberately not stripped:
    a rule that does not turn "James", "news" or "physics" into other words needs a dictionary.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return _PUNCTUATION_OR_SPACE.sub(" ", folded).strip()


def normalize_concept_type(kind: str) -> str:
    """Concept types compare case- and spacing-insensitively ("Person", " person " → "person")."""
    return "_".join(normalize_concept_name(kind).split())


def is_goal_type(kind: str) -> bool:
    """Whether a concept of this type is a goal ("goal", "Goal", " goal ")."""
    return normalize_concept_type(kind) == GOAL_CONCEPT_TYPE


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
"""NUL and unpaired surrogates: Postgres text and jsonb cannot hold them (and JSON can carry them)."""
UNSTORABLE_PROBLEM = "contains a NUL character (\\u0000) or an unpaired surrogate, which cannot be stored"


def unstorable_at(value: Any) -> str | None:
    """Where in `value` a text Postgres cannot store is: "" for `value` itself, "[2]" or "['key']" inside lists,
    tuples and dicts (keys too) and models that are not StorableModel; None when every text can be stored.

    Why it looks inside: a `list[str]` field (a profile's traits) or a dict's key holds text as much as a `str`
    field does, and one unstorable character there fails the write on every try."""
    if isinstance(value, str):
        return None if _is_storable(value) else ""
    if isinstance(value, dict):
        for key, item in value.items():
            for part in (key, item):
                if (inner := unstorable_at(part)) is not None:
                    return f"[{key!a}]{inner}"  # escaped: the path goes into stored errors too
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (inner := unstorable_at(item)) is not None:
                return f"[{i}]{inner}"
        return None
    if isinstance(value, BaseModel) and not isinstance(value, StorableModel):  # a StorableModel checked itself
        for name, item in value.__dict__.items():
            if (inner := unstorable_at(item)) is not None:
                return f".{name}{inner}"
    return None


class StorableModel(BaseModel):
    """Every text of the answer, at any depth, is checked for what Postgres cannot store, so such an answer goes back
    to the model in the repair request instead of failing at the write on every try."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        where = unstorable_at(value)
        if where is not None:
            raise ValueError(f"{where} {UNSTORABLE_PROBLEM}" if where else UNSTORABLE_PROBLEM)
        return value


def storable_text(text: str) -> str:
    """`text` with what Postgres (and UTF-8) cannot hold replaced by U+FFFD: for error messages that quote an answer
    and for the texts of a request."""
    return text if _is_storable(text) else _UNSTORABLE.sub("\ufffd", text)


def _is_storable(text: str) -> bool:
    """No NUL and no unpaired surrogate, found by two C-speed scans rather than a regex over every character."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # only an unpaired surrogate fails
        return False
    return True
