"""What the model answers for one window, and the checks pydantic cannot make (references, sizes, blankness).

Why: the model sees existing concepts as small integer handles (1..N) and earlier memories as "p1".."pN", never
database ids, and every reference in its answer is checked against what it was shown; an unknown handle or key is a
validation error that goes back to the model in the one repair request. So LLM output can never name a row it was
not shown. The schema is strict-mode friendly (every field required on the wire, nullable where optional, no extras)
and stays small: size limits are checked here, not sent as maxItems/maxLength with every call, and the fields carry
no descriptions, since prompts/ingestion.j2 explains each one (the schema and the prompt are both sent with every
call: saying it twice would be paid twice). Patterns, bounds and enums stay in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import Field, field_validator

from agents.answer_limits import text_problem, too_many
from agents.handles import Listing, handle_pattern, parse_handle, quoted
from core.ingestion import ForwardContext
from core.vocabulary import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    GrowthDimension,
    RelationshipType,
    StorableModel,
    normalize_concept_name,
)
from settings import Settings

NAME_CHARS = 200
"""Longest concept name or type, memory or conversation title, or topic an answer may hold: a name is a few words."""
MAX_UNRESOLVED_TOPICS = 20

_REF_PATTERN = handle_pattern("mce")


class ExtractedMemoryUnit(StorableModel):
    key: str = Field(pattern=handle_pattern("m"))
    title: str
    content: str
    creation_ts: datetime | None
    importance: float = Field(ge=1, le=10)
    sentiment: float = Field(ge=-1, le=1)
    attachment: str | None = Field(None, pattern=handle_pattern("a"))
    retells: str | None = Field(None, pattern=handle_pattern("p"))
    updates: str | None = Field(None, pattern=handle_pattern("p"))

    @property
    def earlier(self) -> str | None:
        """The earlier memory's handle this one retells or updates (check_references refuses both at once)."""
        return self.retells or self.updates

    @field_validator("creation_ts", mode="after")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        """The year is checked before the conversion to UTC, which is what overflows near year 1 or 9999."""
        if value is None:
            return None
        years = range(EARLIEST_YEAR, LATEST_YEAR + 1)
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if value.year not in years or aware.astimezone(UTC).year not in years:
            raise ValueError(f"must be in the years {EARLIEST_YEAR}..{LATEST_YEAR}, or null if the text gives no date")
        return value


class ExtractedConcept(StorableModel):
    key: str = Field(pattern=handle_pattern("c"))
    name: str
    type: str
    description: str | None
    existing_handle: int | None


class ExtractedRelationship(StorableModel):
    source: str = Field(pattern=_REF_PATTERN)
    target: str = Field(pattern=_REF_PATTERN)
    type: RelationshipType
    strength: float = Field(ge=0, le=1)
    description: str


class ExtractedGrowthEvent(StorableModel):
    dim_key: GrowthDimension
    delta: float = Field(ge=-1, le=1)
    rationale: str
    about: str = Field(pattern=_REF_PATTERN)


class IngestionOutput(StorableModel):
    """The model's whole answer for one window."""

    title: str
    context_summary: str
    importance_score: float = Field(ge=1, le=10)
    memory_units: list[ExtractedMemoryUnit]
    concepts: list[ExtractedConcept]
    relationships: list[ExtractedRelationship]
    growth_events: list[ExtractedGrowthEvent]
    forward_context: ForwardContext


def check_references(output: IngestionOutput, handle_count: int, earlier_count: int = 0) -> list[str]:
    """Problems pydantic cannot see: unknown keys or handles, duplicate keys, IS_ABOUT direction, self-loops, an
    earlier memory retold or updated twice or both at once.

    `handle_count` is how many existing concepts the model was shown (handles 1..handle_count), `earlier_count` how
    many earlier memories (p1..p<earlier_count>). The messages are addressed to the model, since they are sent back
    to it in the repair request.
    """
    problems: list[str] = []
    memory_keys: set[str] = set()
    concept_identity: dict[str, str] = {}  # concept key -> "e<handle>" or the key itself
    earlier = Listing({"p": earlier_count})
    revised: dict[str, int] = {}  # earlier memory handle -> the memory unit that revises it

    def valid_handle(handle: int) -> bool:
        return 1 <= handle <= handle_count

    shown = f"handles 1..{handle_count}" if handle_count else "no handles (no existing concepts were listed)"
    for i, unit in enumerate(output.memory_units):
        if unit.key in memory_keys:
            problems.append(
                f"memory_units[{i}].key: {quoted(unit.key)} is used twice; give each memory unit its own key"
            )
        memory_keys.add(unit.key)
        if unit.retells and unit.updates:
            problems.append(f"memory_units[{i}]: it retells or it updates an earlier memory, not both; null one")
        for field in ("retells", "updates"):
            handle = getattr(unit, field)
            if handle is None:
                continue
            if problem := earlier.problem(f"memory_units[{i}].{field}", handle, "p"):
                problems.append(problem)
            elif handle in revised and revised[handle] != i:
                problems.append(
                    f"memory_units[{i}].{field}: {handle} is already revised by memory_units[{revised[handle]}]; "
                    "make them one memory unit"
                )
            else:
                revised[handle] = i
    for i, concept in enumerate(output.concepts):
        if concept.key in concept_identity:
            problems.append(f"concepts[{i}].key: {quoted(concept.key)} is used twice; give every concept its own key")
        handle = concept.existing_handle
        if handle is not None and not valid_handle(handle):
            problems.append(f"concepts[{i}].existing_handle: {handle} was not listed (you were shown {shown})")
            handle = None
        concept_identity[concept.key] = f"e{handle}" if handle is not None else concept.key

    def resolve(ref: str, where: str) -> str | None:
        """The identity a reference points at, or None (with a problem recorded) when it points at nothing."""
        if ref.startswith("m"):
            if ref in memory_keys:
                return ref
            problems.append(f"{where}: {quoted(ref)} is not the key of any memory unit in your answer")
        elif ref.startswith("c"):
            if ref in concept_identity:
                return concept_identity[ref]
            problems.append(f"{where}: {quoted(ref)} is not the key of any concept in your answer")
        elif (handle := parse_handle(ref, "e")) is None:
            problems.append(f"{where}: {quoted(ref)} is not a key of your answer or an existing concept's handle")
        elif valid_handle(handle.number):
            return str(handle)
        else:
            problems.append(
                f"{where}: {ref!r} refers to existing concept {handle.number}, which was not listed ({shown})"
            )
        return None

    for i, rel in enumerate(output.relationships):
        where = f"relationships[{i}]"
        source = resolve(rel.source, f"{where}.source")
        target = resolve(rel.target, f"{where}.target")
        if rel.type is RelationshipType.IS_ABOUT and not (rel.source.startswith("m") and rel.target[0] in "ce"):
            problems.append(
                f"{where}: IS_ABOUT must go from a memory unit to a concept (got {rel.source} -> {rel.target})"
            )
        if source is not None and source == target:
            problems.append(f"{where}: {rel.source} -> {rel.target} links an item to itself; remove it")
    for i, event in enumerate(output.growth_events):
        resolve(event.about, f"growth_events[{i}].about")
    return problems


@dataclass(frozen=True)
class IngestionLimits:
    """What one answer may hold: far above what a real conversation yields, so only a runaway answer meets them
    (one wrote 3000 memory units and a 200 KB title). Set from ORRERY_INGESTION_MAX_* (settings.py)."""

    memory_units: int = 50
    concepts: int = 100
    links: int = 300
    """Relationships, and growth events, each."""
    text_chars: int = 4000
    """Any text that is not a name: memory contents, summaries, descriptions, rationales, the greeting."""
    name_chars: int = NAME_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestionLimits:
        return cls(
            memory_units=settings.ingestion_max_memory_units,
            concepts=settings.ingestion_max_concepts,
            links=settings.ingestion_max_links,
            text_chars=settings.ingestion_max_text_chars,
        )


def check_limits(output: IngestionOutput, limits: IngestionLimits) -> list[str]:
    """Problems of size and blankness: too many items, texts too long, blank names, titles or contents.

    Checked here rather than as maxItems/maxLength in the schema, so the schema sent with every call stays small and
    the same whatever an operator sets; the messages are addressed to the model, for the repair request.
    """
    problems: list[str] = []
    counts = (
        ("memory_units", len(output.memory_units), limits.memory_units),
        ("concepts", len(output.concepts), limits.concepts),
        ("relationships", len(output.relationships), limits.links),
        ("growth_events", len(output.growth_events), limits.links),
        ("forward_context.unresolved_topics", len(output.forward_context.unresolved_topics), MAX_UNRESOLVED_TOPICS),
    )
    problems += too_many(counts)

    def text(where: str, value: str | None, most: int, *, required: bool = False) -> None:
        if problem := text_problem(where, value, most, required=required):
            problems.append(problem)

    names, texts = limits.name_chars, limits.text_chars
    text("title", output.title, names, required=True)
    text("context_summary", output.context_summary, texts)
    for i, unit in enumerate(output.memory_units):
        text(f"memory_units[{i}].title", unit.title, names, required=True)
        text(f"memory_units[{i}].content", unit.content, texts, required=True)
    for i, concept in enumerate(output.concepts):
        for field, value in (("name", concept.name), ("type", concept.type)):
            where = f"concepts[{i}].{field}"
            if value.strip() and not normalize_concept_name(value):
                problems.append(f"{where}: {value!r} has no letter or digit; name it in words")
            text(where, value, names, required=True)
        text(f"concepts[{i}].description", concept.description, texts)
    for i, rel in enumerate(output.relationships):
        text(f"relationships[{i}].description", rel.description, texts)
    for i, event in enumerate(output.growth_events):
        text(f"growth_events[{i}].rationale", event.rationale, texts)
    forward = output.forward_context
    text("forward_context.proactive_greeting", forward.proactive_greeting, texts)
    text("forward_context.suggested_focus", forward.suggested_focus, names)
    for i, topic in enumerate(forward.unresolved_topics):
        text(f"forward_context.unresolved_topics[{i}].topic", topic.topic, names)
        text(f"forward_context.unresolved_topics[{i}].suggested_question", topic.suggested_question, texts)
    return problems
