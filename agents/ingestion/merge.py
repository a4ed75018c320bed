"""Windows' answers merged into one deduplicated IngestionResult's parts.

Why: the result uses the agent's own keys ("m1", "c1") for new items and real ids only for existing concepts and for
the earlier memory units a new one retells or updates, so the store can create everything in one transaction
(deterministic ids from conversation id + key) and wire relationships and growth events by key. Windows overlap and
a model may re-create a concept it was shown, so items are merged by identity here and the store never sees
duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from agents.handles import parse_handle
from agents.ingestion.inputs import EarlierMemory, ExistingConcept
from agents.ingestion.schema import ExtractedConcept, ExtractedMemoryUnit, IngestionOutput
from core.ingestion import (
    ConceptDraft,
    EntityRef,
    ForwardContext,
    GrowthEventDraft,
    MemoryUnitDraft,
    RelationshipDraft,
)
from core.revisions import RevisionKind
from core.vocabulary import (
    EntityKind,
    GrowthDimension,
    RelationshipType,
    normalize_concept_name,
    normalize_concept_type,
)


class Merger:
    """Accumulates windows into one deduplicated result, translating each window's keys into result keys."""

    def __init__(
        self,
        existing: Sequence[ExistingConcept],
        default_ts: datetime,
        attachments: Sequence[str] = (),
        earlier: Sequence[EarlierMemory] = (),
    ) -> None:
        self._existing = existing
        self._attachments = attachments  # media ids, by attachment handle ("a1" is the first)
        self._existing_by_name = {(normalize_concept_name(c.name), normalize_concept_type(c.type)): c for c in existing}
        self._earlier = earlier
        self._default_ts = default_ts
        self.memory_units: dict[str, MemoryUnitDraft] = {}  # normalized title, or "p:" + the revised unit's id -> draft
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
                refs[concept.key] = self._existing_concept(concept.existing_handle, concept.description, revise=True)
            else:
                refs[concept.key] = self._add_new_concept(concept)

        def ref(local: str) -> EntityRef:
            """A key of this answer, or an existing concept's "e<handle>" read as check_references read it."""
            handle = parse_handle(local, "e")
            return refs[local] if handle is None else self._existing_concept(handle.number, None, revise=False)

        for rel in output.relationships:
            source, target = ref(rel.source), ref(rel.target)
            if source == target:
                continue  # two items the merge found to be one
            key = (source, rel.type, target)
            known = self.relationships.get(key)
            if known is None or rel.strength > known.strength:
                self.relationships[key] = RelationshipDraft(
                    source=source,
                    target=target,
                    relationship_type=rel.type,
                    strength=rel.strength,
                    description=rel.description.strip(),
                )
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
        """A new unit by its normalized title, or what this answer says of an earlier unit (one draft per earlier
        unit: a later window's text of it wins, as the later part of the conversation is the more current)."""
        earlier = parse_handle(unit.earlier, "p") if unit.earlier else None
        revises = self._earlier[earlier.index].memory_unit_id if earlier is not None else None
        identity = f"p:{revises}" if revises else normalize_concept_name(unit.title)
        known = self.memory_units.get(identity)
        attachment = self._attachment(unit.attachment)
        if known is not None and revises is None:
            known.importance_score = max(known.importance_score, unit.importance)
            known.attachment_media_id = known.attachment_media_id or attachment
            return EntityRef(kind=EntityKind.MEMORY_UNIT, key=known.key)
        ts = unit.creation_ts or self._default_ts
        draft = MemoryUnitDraft(
            key=known.key if known is not None else f"m{len(self.memory_units) + 1}",
            title=unit.title.strip(),
            content=unit.content.strip(),
            creation_ts=ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC),
            importance_score=max(unit.importance, known.importance_score) if known is not None else unit.importance,
            sentiment_score=unit.sentiment,
            attachment_media_id=attachment or (known.attachment_media_id if known is not None else None),
            revises=revises,
            revision=None if revises is None else RevisionKind.RETOLD if unit.retells else RevisionKind.UPDATED,
        )
        self.memory_units[identity] = draft
        return EntityRef(kind=EntityKind.MEMORY_UNIT, key=draft.key)

    def _attachment(self, text: str | None) -> str | None:
        """The media id of an attachment handle the check accepted ("a2"), or None."""
        handle = parse_handle(text, "a") if text is not None else None
        return self._attachments[handle.index] if handle and handle.number <= len(self._attachments) else None

    def _existing_concept(self, handle: int, description: str | None, *, revise: bool) -> EntityRef:
        """A concept the model named by its handle; a description given with it says what is true of it now."""
        return self._reuse(self._existing[handle - 1], description, revise=revise)

    def _add_new_concept(self, concept: ExtractedConcept) -> EntityRef:
        name, kind = " ".join(concept.name.split()), normalize_concept_type(concept.type)
        same = self._existing_by_name.get((normalize_concept_name(name), kind))
        if same is not None:  # the model did not reuse a concept it was shown: reuse it anyway (no revision)
            return self._reuse(same, concept.description, revise=False)
        return self._put_concept((normalize_concept_name(name), kind), name, kind, concept.description, None)

    def _reuse(self, concept: ExistingConcept, description: str | None, *, revise: bool) -> EntityRef:
        identity = ("id", concept.concept_id)
        return self._put_concept(identity, concept.name, concept.type, description, concept.concept_id, revise=revise)

    def _put_concept(
        self,
        identity: tuple[str, str],
        name: str,
        kind: str,
        description: str | None,
        existing_id: str | None,
        *,
        revise: bool = False,
    ) -> EntityRef:
        known = self.concepts.get(identity)
        text = description.strip() if description and description.strip() else None
        if known is None:
            known = ConceptDraft(
                key=f"c{len(self.concepts) + 1}",
                name=name,
                normalized_name=normalize_concept_name(name),
                type=kind,
                description=text,
                existing_concept_id=existing_id,
                revise_description=revise and text is not None,
            )
            self.concepts[identity] = known
        elif revise and text is not None:  # a later window says what is true of it now
            known.description, known.revise_description = text, True
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
