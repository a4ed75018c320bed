"""The value lists and JSON shapes Orrery writes (or reads) that store/schema.prisma cannot list, as the generated
blocks of docs/contract.md.

The vocabularies are imported from where the code defines them (core.vocabulary's enums, the conversation
statuses, the growth source, the turn-context model). The JSON objects the ingestion write builds inline are
described by the strict models below; tests/interop/test_contract.py runs a real ingestion and validates every
object it wrote against them, so a key added to the write without a line here fails a test.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.insight.schema import ProfileOutput
from core.corrections import CARD_TARGET, CardFeedback, InteractionType
from core.ingestion import ForwardContext
from core.insight import InsightArtifactType
from core.media import FailureCode, MediaFailure, MediaKind, MediaReading, MediaStatus, ReadingMethod
from core.revisions import RevisionKind
from core.vocabulary import GROWTH_SOURCES, AgentName, ArtifactType, EntityKind, GrowthDimension, PromptStatus
from store.context import TurnContextPackage, turn_context_key
from store.repos.conversations import CONVERSATION_STATUSES


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConceptCardDisplay(_Shape):
    """cards.display_data of a `concept` card."""

    title: str = Field(description="The concept's name")
    subtitle: str = Field(description="The concept's type")
    description: str | None


class MemoryCardDisplay(_Shape):
    """cards.display_data of a `memory` card."""

    title: str
    preview: str = Field(description="The first 280 characters of the memory's content")
    importance: float = Field(ge=1, le=10)


class ArtifactCardDisplay(_Shape):
    """cards.display_data of an insight's card (`insight_summary`, `trophy`, `goal_achievement_story`)."""

    title: str
    preview: str = Field(description="The first 280 characters of the narrative")
    artifact_type: ArtifactType
    insight_kind: InsightArtifactType


class ReportCardDisplay(_Shape):
    """cards.display_data of a `cycle_report` card."""

    title: str
    preview: str = Field(description="The first 280 characters of the report's narrative")


class MemoryProfile(ProfileOutput):
    """users.memory_profile, written by each cycle's insight (replaced whole)."""

    updated_at: str = Field(description="ISO 8601 with offset (UTC)")
    cycle_start: str = Field(description="ISO 8601 with offset (UTC): the cycle that wrote it")
    source: AgentName = Field(description="Always `InsightAgent`")


class MemoryUnitMetadata(_Shape):
    """memory_units.metadata: a unit ingestion extracted carries extraction_key, prompt_version and model; a unit the
    user added through a correction carries source_interaction_id instead (it came from no conversation)."""

    extraction_key: str | None = Field(
        None, description='The key the model gave it ("m1"): with the conversation id, its id (ingestion)'
    )
    prompt_version: str | None = Field(None, description="The ingestion prompt's version (a hash of its text)")
    model: str | None = Field(None, description="The LLM model that extracted it (ingestion)")
    source_interaction_id: str | None = Field(
        None, description="The interaction_logs row (a correction) the user added it with (corrections)"
    )
    source_conversation_ids: list[str] | None = Field(
        None,
        description="Every conversation that told it, its own first; written once a later conversation retold or "
        "updated it (memory_revisions has what each changed)",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> MemoryUnitMetadata:
        extracted = (self.extraction_key, self.prompt_version, self.model)
        if self.source_interaction_id is None and None in extracted:
            raise ValueError("an extracted unit names extraction_key, prompt_version and model")
        if self.source_interaction_id is not None and any(v is not None for v in extracted):
            raise ValueError("a unit from a correction names source_interaction_id only")
        return self


class MemoryUnitRevisionValues(_Shape):
    """memory_revisions.before / .after of a `MemoryUnit` revision: only the fields the revision changed (a retelling
    that changed nothing but the sources has both empty)."""

    title: str | None = None
    content: str | None = None
    creation_ts: str | None = Field(None, description="ISO 8601 with offset (UTC)")
    importance_score: float | None = None
    sentiment_score: float | None = None


class ConceptRevisionValues(_Shape):
    """memory_revisions.before / .after of a `Concept` revision."""

    description: str | None


INTERACTION_ROWS: dict[InteractionType, tuple[str, str, str]] = {
    InteractionType.CORRECTION: (
        "`MemoryUnit` or `Concept` and its id",
        "what is wrong, in the user's words (required)",
        "none",
    ),
    InteractionType.CARD_FEEDBACK: (
        f"`{CARD_TARGET}` and the card's `card_id`",
        "an optional comment",
        "`CardFeedback` below",
    ),
    InteractionType.REFLECTION: (
        "none, or the `MemoryUnit` / `Concept` it is about",
        "what the user wants remembered (required)",
        "none",
    ),
}
"""interaction_type → (target_entity_type and target_entity_id, content_text, content_structured)."""

REVISION_KINDS: dict[RevisionKind, str] = {
    RevisionKind.RETOLD: "a later conversation told the same event again: the one memory unit was enriched (merged "
    "content, the higher importance, the earlier `creation_ts`; the conversation added to its sources)",
    RevisionKind.UPDATED: "a later conversation changed what is true: a memory unit's text or a concept's description",
    RevisionKind.CORRECTED: "the user corrected it in the web app (`source_interaction_id`)",
    RevisionKind.FORGOTTEN: "the user asked to forget the memory unit: it is gone with its earlier revisions; this row "
    "keeps when and why, never the text (`before` and `after` empty)",
    RevisionKind.ADDED: "the user's reflection became a new memory unit",
}
"""memory_revisions.kind → what it means."""


class GrowthEventDetails(_Shape):
    """growth_events.details: `source_conversation_id` when ingestion wrote it (source `IngestionAgent`),
    `cycle_start` when a cycle's insight did (source `InsightAgent`)."""

    rationale: str
    source_conversation_id: str | None = None
    cycle_start: str | None = Field(None, description="ISO 8601 with offset (UTC)")


class PackagedPrompt(_Shape):
    """One proactive prompt of the package: pending when the package was written, and deliverable until
    `expires_at`. The web app claims it before the companion asks it (see "Proactive prompts")."""

    prompt_id: str = Field(description="proactive_prompts.prompt_id, the row the web app marks delivered/answered")
    prompt_text: str
    priority: int = Field(description="Higher first; the list is already in delivery order")
    created_at: str = Field(description="ISO 8601 with offset (UTC)")
    expires_at: str = Field(description="ISO 8601 with offset (UTC); never ask it after this")


class NextConversationContextPackage(ForwardContext):
    """users.next_conversation_context_package: what the companion should know at the start of the next
    conversation; replaced by an ingestion only when its conversation started later than the package's.
    `proactive_prompts` is refreshed whenever prompts are written or expire (other keys kept)."""

    source_conversation_id: str
    source_conversation_start_time: str = Field(description="ISO 8601 with offset (UTC)")
    generated_at: str = Field(description="ISO 8601 with offset (UTC)")
    proactive_prompts: list[PackagedPrompt] = Field(
        description="The best pending prompts (at most 3), in delivery order; never an expired one"
    )


class ConversationFailure(_Shape):
    """conversations.metadata.failure, set with status `failed`; other metadata keys are kept."""

    reason: str = Field(description="One line: which job, what went wrong, what to do")
    at: str = Field(description="ISO 8601 with offset (UTC)")


class AttachmentWait(_Shape):
    """conversations.metadata.attachment_wait: how often ingestion waited for the conversation's attachments to be
    read (at most ORRERY_MEDIA_WAIT_TRIES times, then it goes on without them); other metadata keys are kept."""

    deferrals: int = Field(ge=1, description="Times counted, the last one the ingestion that went on")
    last_at: str = Field(description="ISO 8601 with offset (UTC)")


MEDIA_STATUS_OWNERS: dict[str, str] = {
    MediaStatus.PENDING: "the web app, when it uploads the attachment (the default)",
    MediaStatus.PROCESSING: "Orrery, while a media job reads it",
    MediaStatus.PROCESSED: "Orrery, with what was read in `metadata.reading`",
    MediaStatus.FAILED: "Orrery, when the file cannot be read or its job gives up (`metadata.failure`); "
    "`reprocess=true` may read it again",
}

PROMPT_STATUS_OWNERS: dict[str, str] = {
    PromptStatus.PENDING: "Orrery, when it writes the prompt; only a pending prompt enters the package",
    PromptStatus.DELIVERED: "the web app, with `delivered_at`, when the companion asks it (only from `pending`)",
    PromptStatus.ANSWERED: "the web app, when the user replies to it (only from `delivered`)",
    PromptStatus.EXPIRED: "Orrery, when it was not delivered before `metadata.expires_at` "
    "(`ORRERY_PROACTIVE_PROMPT_EXPIRY_DAYS` after it was written)",
}

DERIVED_ARTIFACT = "DerivedArtifact"

CARD_TYPES: dict[str, tuple[str, type[BaseModel]]] = {
    "concept": (EntityKind.CONCEPT.value, ConceptCardDisplay),
    "memory": (EntityKind.MEMORY_UNIT.value, MemoryCardDisplay),
    ArtifactType.INSIGHT_SUMMARY.value: (DERIVED_ARTIFACT, ArtifactCardDisplay),
    ArtifactType.TROPHY.value: (DERIVED_ARTIFACT, ArtifactCardDisplay),
    ArtifactType.GOAL_ACHIEVEMENT_STORY.value: (DERIVED_ARTIFACT, ArtifactCardDisplay),
    ArtifactType.CYCLE_REPORT.value: (DERIVED_ARTIFACT, ReportCardDisplay),
}
"""card_type → (source_entity_type, display_data shape) of the cards Orrery writes."""

STATUS_OWNERS: dict[str, str] = {
    "active": "the web app, when a conversation starts (the default)",
    "ended": "the web app when the user closes a conversation, or Orrery's timeout sweep after "
    "`ORRERY_CONVERSATION_TIMEOUT_MINUTES` of silence; the sweep enqueues ingestion of every `ended` conversation",
    "processing": "Orrery, while an ingestion of the conversation runs",
    "processed": "Orrery, in the same transaction as the memory the ingestion wrote",
    "failed": "Orrery, when ingestion gives up (`metadata.failure`); a new trigger may ingest it again",
}


def _schema_block(model: type[BaseModel]) -> str:
    return "```json\n" + json.dumps(model.model_json_schema(), indent=2) + "\n```"


def _values(values: Any) -> str:
    return ", ".join(f"`{value}`" for value in values)


def blocks() -> dict[str, str]:
    """Every generated block of docs/contract.md by name."""
    unowned = set(CONVERSATION_STATUSES) ^ set(STATUS_OWNERS)
    if unowned:
        raise ValueError(f"conversation statuses without an owner line (or owners of unknown statuses): {unowned}")
    statuses = ["| status | set by |", "|---|---|"] + [
        f"| `{status}` | {STATUS_OWNERS[status]} |" for status in CONVERSATION_STATUSES
    ]
    cards = ["| card_type | source_entity_type | display_data |", "|---|---|---|"] + [
        f"| `{card_type}` | `{kind}` | `{shape.__name__}` below |" for card_type, (kind, shape) in CARD_TYPES.items()
    ]
    shapes = dict.fromkeys(shape for _, shape in CARD_TYPES.values())
    card_shapes = "\n\n".join(f"`{shape.__name__}`:\n\n{_schema_block(shape)}" for shape in shapes)
    if set(MediaStatus) ^ set(MEDIA_STATUS_OWNERS):
        raise ValueError("media statuses without an owner line (or owners of unknown statuses)")
    if set(PromptStatus) ^ set(PROMPT_STATUS_OWNERS):
        raise ValueError("prompt statuses without an owner line (or owners of unknown statuses)")
    prompt_statuses = ["| status | set by |", "|---|---|"] + [
        f"| `{status.value}` | {PROMPT_STATUS_OWNERS[status]} |" for status in PromptStatus
    ]
    media_statuses = ["| processing_status | set by |", "|---|---|"] + [
        f"| `{status.value}` | {MEDIA_STATUS_OWNERS[status]} |" for status in MediaStatus
    ]
    media = [
        f"- `type`: {_values(kind.value for kind in MediaKind)}",
        f"- `metadata.reading.method`: {_values(method.value for method in ReadingMethod)}",
        f"- `metadata.failure.code`: {_values(code.value for code in FailureCode)}",
        "- `metadata.reading`:",
        "",
        _schema_block(MediaReading),
        "",
        "- `metadata.failure`:",
        "",
        _schema_block(MediaFailure),
    ]
    return {
        "prompt-statuses": "\n".join(prompt_statuses),
        "media-statuses": "\n".join(media_statuses),
        "media-metadata": "\n".join(media),
        "attachment-wait": _schema_block(AttachmentWait),
        "conversation-statuses": "\n".join(statuses),
        "conversation-failure": _schema_block(ConversationFailure),
        "cards": "\n".join(cards) + "\n\n" + card_shapes,
        "growth-events": "\n".join(
            [
                f"- `entity_type`: {_values(kind.value for kind in EntityKind)} (the table `entity_id` points into)",
                f"- `dim_key`: {_values(dim.value for dim in GrowthDimension)}",
                f"- `source`: {_values(source.value for source in GROWTH_SOURCES)} (the agent that wrote it)",
                "- `delta`: -1 … 1 (positive for progress, negative for a setback)",
                "- `details`:",
                "",
                _schema_block(GrowthEventDetails),
            ]
        ),
        "memory-unit-metadata": _schema_block(MemoryUnitMetadata),
        "interaction-rows": "\n".join(
            [
                "| interaction_type | target_entity_type / target_entity_id | content_text | content_structured |",
                "|---|---|---|---|",
                *(f"| `{kind.value}` | {' | '.join(cells)} |" for kind, cells in INTERACTION_ROWS.items()),
                "",
                "`CardFeedback`:",
                "",
                _schema_block(CardFeedback),
            ]
        ),
        "memory-revisions": "\n".join(
            [
                "| kind | meaning |",
                "|---|---|",
                *(f"| `{kind.value}` | {meaning} |" for kind, meaning in REVISION_KINDS.items()),
                "",
                f"- `entity_type`: {_values(kind.value for kind in EntityKind)}",
                "- `before` / `after` of a `MemoryUnit`:",
                "",
                _schema_block(MemoryUnitRevisionValues),
                "",
                "- `before` / `after` of a `Concept`:",
                "",
                _schema_block(ConceptRevisionValues),
            ]
        ),
        "artifacts": "\n".join(
            [
                f"- `artifact_type`: {_values(t.value for t in ArtifactType)}",
                f"- `content_data.insight_kind` (insight's): {_values(k.value for k in InsightArtifactType)}; "
                "a `breakthrough` is stored as a `trophy`, a `goal_achievement_story` as itself, "
                "the others as `insight_summary`",
                "- a `goal_achievement_story` (the story of how the user reached a goal, from the goal's first memory "
                "to its achievement) is written at most once per goal: `source_concept_id` and "
                "`content_data.goal_concept_id` name the goal (a concept of type `goal`), "
                "`content_data.source_memory_unit_ids` the memories it is told from",
                f"- `generated_by_agent`: {_values([AgentName.INSIGHT.value, AgentName.CYCLE_REPORT.value])}",
            ]
        ),
        "memory-profile": _schema_block(MemoryProfile),
        "next-conversation-context-package": _schema_block(NextConversationContextPackage),
        "turn-context": f"Key: `{turn_context_key('{conversationId}')}`; value: one JSON object.\n\n"
        + _schema_block(TurnContextPackage),
    }
