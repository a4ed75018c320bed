"""IngestionAgent: one finished conversation in, a typed extraction ready to persist out. Pure: no SQL, no queue.

Why it is shaped this way:
- The model sees existing concepts as small integer handles (1..N), never database ids, and every reference in its
  answer is checked against what it was shown; an unknown handle or key is a validation error that goes back to
  the model in the one repair request. So LLM output can never name a row it was not shown.
- The result uses the agent's own keys ("m1", "c1") for new items and real ids only for existing concepts, so the
  persistence layer can create everything in one transaction (deterministic ids from conversation id + key) and
  wire relationships and growth events by key.
- A conversation longer than the input budget is split into windows on message boundaries (with a small overlap)
  and the windows' extractions are merged and deduplicated here, so the persistence layer never sees duplicates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.llm import CallContext, StructuredLLM, estimate_tokens
from core.ingestion import (
    ConceptDraft,
    EntityRef,
    ForwardContext,
    GrowthEventDraft,
    IngestionResult,
    IngestionStatus,
    MemoryUnitDraft,
    RelationshipDraft,
)
from core.llm_records import LLMUsage
from core.vocabulary import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    EntityKind,
    GrowthDimension,
    RelationshipType,
    StorableModel,
    normalize_concept_name,
    normalize_concept_type,
)
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "ingestion"
PROMPT_NAME = "ingestion"
OVERLAP_FRACTION = 0.1
"""Share of a window's token budget repeated from the end of the previous window, so an exchange cut by a window
boundary is still seen whole once; duplicates this causes are removed by the merge."""
NAME_CHARS = 200
"""Longest concept name or type, memory or conversation title, or topic an answer may hold: a name is a few words."""
MAX_UNRESOLVED_TOPICS = 20


# ======================================================================================================================
# Vocabulary
# ======================================================================================================================
# ======================================================================================================================
# Input
# ======================================================================================================================
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


# ======================================================================================================================
# What the model answers (strict-schema friendly: every field required, nullable where optional, no extras)
# ======================================================================================================================
_REF_PATTERN = r"^[mce][1-9][0-9]*$"


class ExtractedMemoryUnit(StorableModel):
    key: str = Field(pattern=r"^m[1-9][0-9]*$", description='"m1", "m2", …')
    title: str
    content: str
    creation_ts: datetime | None = Field(description="When it happened (ISO 8601), or null for the conversation time")
    importance: float = Field(ge=1, le=10)
    sentiment: float = Field(ge=-1, le=1)

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
    key: str = Field(pattern=r"^c[1-9][0-9]*$", description='"c1", "c2", …')
    name: str
    type: str
    description: str | None
    existing_handle: int | None = Field(description="Number of the existing concept this is, or null if new")


class ExtractedRelationship(StorableModel):
    source: str = Field(pattern=_REF_PATTERN, description='A memory unit key, a concept key, or "e" + handle')
    target: str = Field(pattern=_REF_PATTERN, description='A memory unit key, a concept key, or "e" + handle')
    type: RelationshipType
    strength: float = Field(ge=0, le=1)
    description: str


class ExtractedGrowthEvent(StorableModel):
    dim_key: GrowthDimension
    delta: float = Field(ge=-1, le=1, description="Positive for progress, negative for a setback")
    rationale: str
    about: str = Field(pattern=_REF_PATTERN, description='The memory unit or concept key, or "e" + handle')


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


def check_references(output: IngestionOutput, handle_count: int) -> list[str]:
    """Problems pydantic cannot see: unknown keys or handles, duplicate keys, HIGHLIGHTS direction, self-loops.

    `handle_count` is how many existing concepts the model was shown (handles 1..handle_count). The messages are
    addressed to the model, since they are sent back to it in the repair request.
    """
    problems: list[str] = []
    memory_keys: set[str] = set()
    concept_identity: dict[str, str] = {}  # concept key -> "e<handle>" or the key itself

    def valid_handle(handle: int) -> bool:
        return 1 <= handle <= handle_count

    shown = f"handles 1..{handle_count}" if handle_count else "no handles (no existing concepts were listed)"
    for i, unit in enumerate(output.memory_units):
        if unit.key in memory_keys:
            problems.append(f"memory_units[{i}].key: {unit.key!r} is used twice; give every memory unit its own key")
        memory_keys.add(unit.key)
    for i, concept in enumerate(output.concepts):
        if concept.key in concept_identity:
            problems.append(f"concepts[{i}].key: {concept.key!r} is used twice; give every concept its own key")
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
            problems.append(f"{where}: {ref!r} is not the key of any memory unit in your answer")
        elif ref.startswith("c"):
            if ref in concept_identity:
                return concept_identity[ref]
            problems.append(f"{where}: {ref!r} is not the key of any concept in your answer")
        else:
            if valid_handle(int(ref[1:])):
                return ref
            problems.append(f"{where}: {ref!r} refers to existing concept {ref[1:]}, which was not listed ({shown})")
        return None

    for i, rel in enumerate(output.relationships):
        where = f"relationships[{i}]"
        source = resolve(rel.source, f"{where}.source")
        target = resolve(rel.target, f"{where}.target")
        if rel.type is RelationshipType.HIGHLIGHTS and not (rel.source.startswith("m") and rel.target[0] in "ce"):
            problems.append(f"{where}: HIGHLIGHTS must go from a memory unit to a concept (got {rel.source} -> "
                            f"{rel.target})")  # fmt: skip
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
            memory_units=settings.ingestion_max_memory_units, concepts=settings.ingestion_max_concepts,
            links=settings.ingestion_max_links, text_chars=settings.ingestion_max_text_chars,
        )  # fmt: skip


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
    for where, count, most in counts:
        if count > most:
            problems.append(f"{where}: {count} items; give at most {most}, the most important ones")

    def text(where: str, value: str | None, most: int, *, required: bool = False) -> None:
        if value is None:
            return
        if required and not value.strip():
            problems.append(f"{where}: must not be blank")
        elif len(value) > most:
            problems.append(f"{where}: {len(value)} characters; write at most {most}")

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


# ======================================================================================================================
# Result
# ======================================================================================================================
# ======================================================================================================================
# Windowing
# ======================================================================================================================
@dataclass(frozen=True)
class _Line:
    """One message (or one slice of an oversized message) as the model sees it."""

    n: int
    role: str
    at: str
    content: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.content) + 12  # the <message …> wrapper


def _role(role: str) -> str:
    cleaned = re.sub(r"[^a-z_]", "", role.lower())
    return cleaned or "unknown"


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _lines(messages: Sequence[ConversationMessage], token_budget: int) -> list[_Line]:
    """Messages as prompt lines; a message longer than the whole budget is cut into budget-sized slices."""
    lines: list[_Line] = []
    max_chars = max(1, (token_budget - 12) * 4)
    for n, message in enumerate(messages, start=1):
        text = message.content.strip()
        if not text:
            continue
        for start in range(0, len(text), max_chars):
            lines.append(_Line(n, _role(message.role), _iso(message.timestamp), text[start : start + max_chars]))
    return lines


def split_into_windows(costs: Sequence[int], token_budget: int, overlap_tokens: int) -> list[range]:
    """Windows over items with the given token costs: consecutive runs within `token_budget`, each after the first
    starting with up to `overlap_tokens` of the previous run's last items. An item over budget gets a window of its
    own, and every window after the first holds at least one item its predecessor did not, so no call is wasted on
    a window that is all overlap."""
    windows: list[range] = []
    start = 0
    while start < len(costs):
        end, used = start, 0
        while end < len(costs) and (end == start or used + costs[end] <= token_budget):
            used += costs[end]
            end += 1
        windows.append(range(start, end))
        if end >= len(costs):
            break
        next_start, overlap = end, 0
        while (
            next_start - 1 > start
            and overlap + costs[next_start - 1] <= overlap_tokens
            and overlap + costs[next_start - 1] + costs[end] <= token_budget  # room for at least one new item
        ):
            next_start -= 1
            overlap += costs[next_start]
        start = next_start
    return windows


# ======================================================================================================================
# Merging windows
# ======================================================================================================================
class _Merger:
    """Accumulates windows into one deduplicated result, translating each window's keys into result keys."""

    def __init__(self, existing: Sequence[ExistingConcept], default_ts: datetime) -> None:
        self._existing = existing
        self._existing_by_name = {(normalize_concept_name(c.name), normalize_concept_type(c.type)): c for c in existing}
        self._default_ts = default_ts
        self.memory_units: dict[str, MemoryUnitDraft] = {}  # normalized title -> draft
        self.concepts: dict[tuple[str, str], ConceptDraft] = {}  # identity -> draft
        self.relationships: dict[tuple[EntityRef, RelationshipType, EntityRef], RelationshipDraft] = {}
        self.growth_events: dict[tuple[GrowthDimension, EntityRef], GrowthEventDraft] = {}
        self.titles: list[tuple[float, str]] = []
        self.summaries: list[str] = []
        self.importance = 0.0
        self.forward: ForwardContext | None = None

    def add(self, output: IngestionOutput) -> None:
        refs: dict[str, EntityRef] = {}
        for unit in output.memory_units:
            refs[unit.key] = self._add_memory_unit(unit)
        for concept in output.concepts:
            if concept.existing_handle is not None:
                refs[concept.key] = self._existing_concept(concept.existing_handle, concept.description)
            else:
                refs[concept.key] = self._add_new_concept(concept)

        def ref(local: str) -> EntityRef:
            return refs[local] if local[0] in "mc" else self._existing_concept(int(local[1:]), None)

        for rel in output.relationships:
            source, target = ref(rel.source), ref(rel.target)
            if source == target:
                continue  # two items the merge found to be one
            key = (source, rel.type, target)
            known = self.relationships.get(key)
            if known is None or rel.strength > known.strength:
                self.relationships[key] = RelationshipDraft(
                    source=source, target=target, relationship_type=rel.type, strength=rel.strength,
                    description=rel.description.strip(),
                )  # fmt: skip
        for event in output.growth_events:
            about = ref(event.about)
            growth_key = (event.dim_key, about)
            seen = self.growth_events.get(growth_key)
            if seen is None or abs(event.delta) > abs(seen.delta):
                self.growth_events[growth_key] = GrowthEventDraft(
                    about=about, dim_key=event.dim_key, delta=event.delta, rationale=event.rationale.strip()
                )
        self.titles.append((output.importance_score, output.title.strip()))
        self.summaries.append(output.context_summary.strip())
        self.importance = max(self.importance, output.importance_score)
        self._merge_forward(output.forward_context)

    def _add_memory_unit(self, unit: ExtractedMemoryUnit) -> EntityRef:
        identity = normalize_concept_name(unit.title)
        known = self.memory_units.get(identity)
        if known is not None:
            known.importance_score = max(known.importance_score, unit.importance)
            return EntityRef(kind=EntityKind.MEMORY_UNIT, key=known.key)
        ts = unit.creation_ts or self._default_ts
        draft = MemoryUnitDraft(
            key=f"m{len(self.memory_units) + 1}", title=unit.title.strip(), content=unit.content.strip(),
            creation_ts=ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC),
            importance_score=unit.importance, sentiment_score=unit.sentiment,
        )  # fmt: skip
        self.memory_units[identity] = draft
        return EntityRef(kind=EntityKind.MEMORY_UNIT, key=draft.key)

    def _existing_concept(self, handle: int, description: str | None) -> EntityRef:
        return self._reuse(self._existing[handle - 1], description)

    def _add_new_concept(self, concept: ExtractedConcept) -> EntityRef:
        name, kind = " ".join(concept.name.split()), normalize_concept_type(concept.type)
        same = self._existing_by_name.get((normalize_concept_name(name), kind))
        if same is not None:  # the model did not reuse a concept it was shown: reuse it anyway
            return self._reuse(same, concept.description)
        return self._put_concept((normalize_concept_name(name), kind), name, kind, concept.description, None)

    def _reuse(self, concept: ExistingConcept, description: str | None) -> EntityRef:
        identity = ("id", concept.concept_id)
        return self._put_concept(identity, concept.name, concept.type, description, concept.concept_id)

    def _put_concept(
        self, identity: tuple[str, str], name: str, kind: str, description: str | None, existing_id: str | None
    ) -> EntityRef:
        known = self.concepts.get(identity)
        text = description.strip() if description and description.strip() else None
        if known is None:
            known = ConceptDraft(
                key=f"c{len(self.concepts) + 1}", name=name, normalized_name=normalize_concept_name(name),
                type=kind, description=text, existing_concept_id=existing_id,
            )  # fmt: skip
            self.concepts[identity] = known
        elif known.description is None and text is not None:
            known.description = text
        return EntityRef(kind=EntityKind.CONCEPT, key=known.key)

    def _merge_forward(self, forward: ForwardContext) -> None:
        """The latest window speaks for "where we left off"; unresolved topics accumulate across windows."""
        if self.forward is None:
            self.forward = forward.model_copy(deep=True)
            return
        topics = {normalize_concept_name(t.topic): t for t in self.forward.unresolved_topics}
        for topic in forward.unresolved_topics:
            topics.setdefault(normalize_concept_name(topic.topic), topic)
        self.forward = ForwardContext(
            proactive_greeting=forward.proactive_greeting,
            unresolved_topics=list(topics.values()),
            suggested_focus=forward.suggested_focus or self.forward.suggested_focus,
        )

    def title(self) -> str:
        """The title of the most important window (the first of equals)."""
        best = max(score for score, _ in self.titles)
        return next(title for score, title in self.titles if score == best)


# ======================================================================================================================
# The agent
# ======================================================================================================================
class IngestionAgent:
    """Turns a conversation into an IngestionResult with one LLM call per window (one for most conversations)."""

    def __init__(
        self,
        llm: StructuredLLM,
        *,
        model: str,
        input_token_budget: int,
        limits: IngestionLimits | None = None,
        prompt: Prompt | None = None,
    ):
        self._llm = llm
        self._model = model
        self._budget = input_token_budget
        self._limits = limits or IngestionLimits()
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    @classmethod
    def from_settings(cls, llm: StructuredLLM, settings: Settings) -> IngestionAgent:
        return cls(
            llm, model=settings.ingestion_model, input_token_budget=settings.llm_input_token_budget,
            limits=IngestionLimits.from_settings(settings),
        )  # fmt: skip

    async def run(self, data: IngestionInput, *, job_id: str | None = None) -> IngestionResult:
        """Extract. Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        conversation = data.conversation
        lines = _lines(conversation.messages, self._budget)
        if not lines:
            return self._result(data, IngestionStatus.EMPTY)
        if not any(line.role == "user" for line in lines):
            return self._result(data, IngestionStatus.NO_USER_MESSAGES)

        spans = split_into_windows([line.tokens for line in lines], self._budget, int(self._budget * OVERLAP_FRACTION))
        windows = [lines[span.start : span.stop] for span in spans]
        context = CallContext(user_id=conversation.user_id, agent=AGENT_NAME, job_id=job_id)
        handle_count, limits = len(data.existing_concepts), self._limits
        merger = _Merger(data.existing_concepts, conversation.start_time)
        usage = LLMUsage()
        for index, window in enumerate(windows, start=1):
            rendered = self._prompt.render(**self._variables(data, window, index, len(windows), merger.summaries))
            answer = await self._llm.complete(
                rendered, IngestionOutput, model=self._model, context=context,
                check=lambda output: [*check_references(output, handle_count), *check_limits(output, limits)],
            )  # fmt: skip
            usage += answer.usage
            merger.add(answer.value)
        return self._result(data, IngestionStatus.EXTRACTED, merger=merger, windows=len(windows), usage=usage)

    def _variables(
        self, data: IngestionInput, window: list[_Line], index: int, count: int, summaries: list[str]
    ) -> dict[str, Any]:
        conversation = data.conversation
        turn_context = data.turn_context.model_dump(exclude_none=True) if data.turn_context else None
        if turn_context is not None:
            turn_context = {
                name: ", ".join(map(str, value)) if isinstance(value, list) else value
                for name, value in turn_context.items()
                if value not in ([], "")
            } or None
        return {
            "conversation": {
                "title": conversation.title,
                "start_time": _iso(conversation.start_time),
                "messages": [vars(line) for line in window],
            },
            "window": {"index": index, "count": count},
            "limits": asdict(self._limits),
            "earlier_summary": " ".join(summaries) or None,
            "turn_context": turn_context,
            "memory_profile": json.dumps(data.memory_profile, ensure_ascii=False, indent=1)
            if data.memory_profile
            else None,
            "existing_concepts": [
                {"handle": handle, "name": c.name, "type": c.type, "description": c.description}
                for handle, c in enumerate(data.existing_concepts, start=1)
            ],
        }

    def _result(
        self,
        data: IngestionInput,
        status: IngestionStatus,
        *,
        merger: _Merger | None = None,
        windows: int = 0,
        usage: LLMUsage | None = None,
    ) -> IngestionResult:
        spent = usage or LLMUsage()
        common: dict[str, Any] = {
            "conversation_id": data.conversation.id,
            "user_id": data.conversation.user_id,
            "status": status,
            "windows": windows,
            "llm_calls": spent.calls,
            "prompt_tokens": spent.prompt_tokens,
            "completion_tokens": spent.completion_tokens,
            "model": self._model,
            "prompt_name": self._prompt.name,
            "prompt_version": self._prompt.version,
        }
        if merger is None:
            return IngestionResult(**common)
        return IngestionResult(
            **common,
            title=merger.title(),
            context_summary=" ".join(merger.summaries),
            importance_score=merger.importance,
            memory_units=list(merger.memory_units.values()),
            concepts=list(merger.concepts.values()),
            relationships=list(merger.relationships.values()),
            growth_events=list(merger.growth_events.values()),
            forward_context=merger.forward,
        )
