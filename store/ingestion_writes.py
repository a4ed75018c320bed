"""Writing one conversation's extraction: everything in one transaction, or nothing.

Why one transaction, gated on the conversation row: arq delivers at least once, so the same extraction can arrive
twice (a duplicate enqueue, a worker killed after the LLM call, a retry after a lost connection). The conversation
row is locked and checked first; if it is already `processed` the second writer changes nothing. The owner's row is
locked in the same statement, so concurrent ingestions of one user's conversations take turns (the next-conversation
package is compared and set without interleaving); concepts are never created twice because ensure_concepts takes a
lock per name, shared with every other writer of concepts. Memory unit ids are derived from the conversation id and
the extraction key, so a reprocess (or a derived store) sees the same ids for the same extraction: a reprocess
revises those units in place and removes only the ones the new extraction no longer has, telling the artifacts that
cite them (and the outbox) first, so no reference to a unit changes behind the derived stores' back.

Memory is revised, never duplicated (DESIGN.md invariant 8): a memory unit the model says retells or updates an
earlier one revises that unit, and a concept it names with a new description has it revised, each with a revision
row keeping what it replaced (store/revise.py). Revision ids derive from the conversation and the entity, and a
reprocess first undoes the revisions its conversation made (those no later source followed), so reprocessing a
conversation writes the same revisions again, never a second set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import PermanentError
from core.ingestion import EntityRef, IngestionResult, IngestionStatus, MemoryUnitDraft
from core.revisions import RevisionKind, RevisionSource, Told, told_again
from core.vocabulary import AgentName, EntityKind, NodeLabel
from store import outbox, revise, salience
from store.postgres import Executor
from store.proactive_prompts_writes import packaged_prompts
from store.repos import (
    cards,
    concepts,
    conversations,
    derived_artifacts,
    growth_events,
    knowledge_edges,
    media_items,
    memory_revisions,
    memory_units,
    users,
)
from store.repos._base import Write, apply, apply_together, transaction
from store.repos.cards import NewCard, concept_display, memory_display
from store.repos.concepts import NewConcept
from store.repos.growth_events import NewGrowthEvent
from store.repos.knowledge_edges import NewEdge
from store.repos.memory_units import NewMemoryUnit

MEMORY_UNIT_NAMESPACE = uuid.UUID("6f1d1f57-8d1e-4a53-9a51-3f0c2d7e9b10")
GROWTH_SOURCE = AgentName.INGESTION.value


@dataclass(frozen=True)
class IngestionThresholds:
    """Below `importance` a conversation is processed without memory writes; cards from `card_importance` up."""

    importance: float
    card_importance: float


@dataclass
class IngestionWriteSummary:
    conversation_id: str
    user_id: str
    outcome: str  # "written", "below_threshold", "nothing_to_extract", "already_processed"
    memory_units: int = 0
    concepts_created: int = 0
    concepts_reused: int = 0
    growth_events: int = 0
    cards: int = 0
    relationships: int = 0
    attachments_linked: int = 0
    replaced: dict[str, int] = field(default_factory=dict)
    memory_units_retold: int = 0
    memory_units_updated: int = 0
    concepts_revised: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "outcome": self.outcome,
            "memory_units": self.memory_units,
            "concepts_created": self.concepts_created,
            "concepts_reused": self.concepts_reused,
            "growth_events": self.growth_events,
            "cards": self.cards,
            "relationships": self.relationships,
            "attachments_linked": self.attachments_linked,
            "replaced": self.replaced,
            "revised": {
                "memory_units_retold": self.memory_units_retold,
                "memory_units_updated": self.memory_units_updated,
                "concepts": self.concepts_revised,
            },
        }


def memory_unit_id(conversation_id: str, key: str) -> str:
    return str(uuid.uuid5(MEMORY_UNIT_NAMESPACE, f"{conversation_id}:{key}"))


async def write_ingestion(
    db: Executor, result: IngestionResult, thresholds: IngestionThresholds, *, reprocess: bool = False
) -> IngestionWriteSummary:
    """Persist `result`; with `reprocess`, replace what an earlier ingestion of the conversation wrote.

    A `failed` conversation is written as a reprocess would be: it may still hold an earlier ingestion's rows (a
    reprocess that failed before that left it `failed`, or the web app moving it back), and a plain trigger must
    replace them rather than fail on their ids every time. A conversation that never got that far holds nothing, so
    this costs its few deletes only on the rare failed one.
    """
    user_id, conversation_id = result.user_id, result.conversation_id
    summary = IngestionWriteSummary(conversation_id, user_id, outcome="written")
    async with transaction(db) as conn:
        locked = await conversations.lock_for_ingestion(conn, user_id, conversation_id)
        if locked is None:
            raise PermanentError(f"conversation {conversation_id} was deleted while it was being ingested")
        conversation = locked.conversation
        if conversation.status == "processed" and not reprocess:
            summary.outcome = "already_processed"
            return summary
        replace = reprocess or conversation.status == "failed"
        extracted = result.status == IngestionStatus.EXTRACTED
        importance = result.importance_score
        if not extracted:
            summary.outcome = "nothing_to_extract"
        elif importance is not None and importance < thresholds.importance:
            summary.outcome = "below_threshold"
        changed: list[outbox.Change] = [outbox.Change(NodeLabel.USER, user_id)]
        held: set[str] = set()
        if replace:
            undone = await revise.undo_conversation(conn, user_id, conversation_id)
            changed += undone.changed.changes()
            previous = await memory_units.memory_unit_ids_from_conversation(conn, user_id, conversation_id)
            source = RevisionSource(conversation_id=conversation_id)
            held = undone.held | await revise.revised_by_others(conn, user_id, previous, source)
            derived = [u for u in result.memory_units if u.revises is None and summary.outcome == "written"]
            kept = {memory_unit_id(conversation_id, u.key) for u in derived} | held
            changed += await _replace_previous(conn, user_id, conversation_id, previous, kept, held, summary)
        memory: _Memory | None = None
        recorded: Write | None = None
        if summary.outcome == "written":
            memory = await _plan_memory(conn, result, thresholds, summary, replace=replace, held=held)
            changed += memory.changes
            package = None
            if result.forward_context is not None and _is_latest(locked.owner_next_context, conversation.start_time):
                package = {
                    **result.forward_context.model_dump(mode="json"),
                    "source_conversation_id": conversation_id,
                    "source_conversation_start_time": conversation.start_time.isoformat(),
                    "generated_at": datetime.now(UTC).isoformat(),
                    "proactive_prompts": await packaged_prompts(conn, user_id, now=datetime.now(UTC)),
                }
            if summary.concepts_created or package is not None:
                recorded = users.recording_ingestion(
                    user_id, concepts_created=summary.concepts_created, next_context=package
                )
        processed = conversations.marking_processed(
            user_id,
            conversation_id,
            title=result.title,
            context_summary=result.context_summary,
            importance_score=importance,
        )
        if memory is None:  # nothing written: only the conversation's status
            await apply(conn, processed)
        else:  # the conversation's new rows and the updates recording them: one round trip
            await memory.write(conn, summary, [recorded, processed])
        await salience.refresh_and_record(conn, user_id, changed)  # the graph and vector stores follow this commit
    return summary


def _is_latest(package: dict[str, Any] | None, start_time: datetime) -> bool:
    """Whether this conversation may replace the next-conversation `package`: ingestions finish in any order
    (several workers, retries, a reprocess of an old conversation), and the newest conversation's outlook must win."""
    if package is None or not isinstance(package.get("source_conversation_start_time"), str):
        return True
    try:
        current = datetime.fromisoformat(package["source_conversation_start_time"])
    except ValueError:
        return True  # unreadable (written by someone else): replace it
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return start_time >= current


async def _replace_previous(
    conn: Executor,
    user_id: str,
    conversation_id: str,
    previous: list[str],
    kept: set[str],
    held: set[str],
    summary: IngestionWriteSummary,
) -> list[outbox.Change]:
    """Clear what this conversation produced before, for the new extraction to take its place; returns what changed,
    for the outbox. Memory units the new extraction derives again (the same ids) are kept and revised in place by
    the write, so every reference to them stays; so are the `held` ones (another source revised them since: they
    stay as they are, cards included). The others go, after the artifacts citing them were told (their sources
    updated, not nulled behind the stores' back). Cards, growth events and relationships are written again; concepts
    stay (other conversations may point at them)."""
    gone = [muid for muid in previous if muid not in kept]
    artifacts = await derived_artifacts.drop_memory_unit_sources(conn, user_id, gone)
    deleted = await memory_units.delete_memory_units(conn, user_id, gone)
    summary.replaced = {
        "memory_units": len(previous),
        "memory_units_removed": len(deleted),
        "cards": await cards.delete_cards_for_entities(conn, user_id, [m for m in previous if m not in held]),
        "growth_events": await growth_events.delete_growth_events_from_conversation(conn, user_id, conversation_id),
        "relationships": await knowledge_edges.delete_edges_from_conversation(conn, user_id, conversation_id),
        "artifact_sources": len(artifacts),
    }
    return [
        *outbox.changes(NodeLabel.MEMORY_UNIT, previous),
        *outbox.changes(NodeLabel.DERIVED_ARTIFACT, artifacts),
    ]


async def _link_attachments(
    conn: Executor, user_id: str, units: list[tuple[str, MemoryUnitDraft]], *, replace: bool
) -> int:
    """Link each attachment a memory unit came from to that unit (media_items.memory_unit_id holds one: the most
    important unit citing it); a reprocess first unlinks the re-derived units' attachments no unit cites any more."""
    links: dict[str, str] = {}
    for muid, unit in sorted(units, key=lambda pair: -pair[1].importance_score):
        if unit.attachment_media_id is not None:
            links.setdefault(unit.attachment_media_id, muid)
    replacing = [muid for muid, _ in units] if replace else []
    return await media_items.link_memory_units(conn, user_id, links, replacing=replacing)


def _told(unit: MemoryUnitDraft) -> Told:
    return Told(
        title=unit.title,
        content=unit.content,
        creation_ts=unit.creation_ts,
        importance_score=unit.importance_score,
        sentiment_score=unit.sentiment_score,
    )


def _earlier_changes(result: IngestionResult, held: set[str], forgotten: set[str]) -> list[revise.UnitChange]:
    """The revisions of earlier memory units this conversation asks for, but of those held (revised since by another
    source) or forgotten by the user."""
    source = RevisionSource(conversation_id=result.conversation_id)
    return [
        revise.UnitChange(unit.revises, unit.revision, source, told_again(unit.revision, _told(unit)))
        for unit in result.memory_units
        if unit.revises is not None and unit.revision is not None and unit.revises not in held | forgotten
    ]


@dataclass
class _Memory:
    """What `_plan_memory` leaves to write: rows nothing else in the transaction reads before the commit, sent in
    one statement with the user's and the conversation's updates."""

    changes: list[outbox.Change]
    user_id: str
    units: list[tuple[str, MemoryUnitDraft]]
    new_cards: list[NewCard]
    replace: bool
    writes: list[Write | None]
    """The memory units, growth events and relationships, in that order."""

    async def write(self, conn: Executor, summary: IngestionWriteSummary, updates: list[Write | None]) -> None:
        """Send the planned rows with `updates`, then what must follow them: the attachments' links (they point at
        the new units) and, on a replace, the cards. Every entity carded in the same statement was created in this
        transaction, so nobody else can be carding it; memory units re-derived in place of earlier ones keep the
        earlier ids, which others could already see and card, so a replace ensures its cards after the units."""
        carded = None if self.replace else cards.carding_new_entities(self.user_id, self.new_cards)
        counts = await apply_together(conn, [*self.writes, carded, *updates])
        summary.memory_units = counts[0]
        summary.attachments_linked = await _link_attachments(conn, self.user_id, self.units, replace=self.replace)
        summary.cards = (
            await cards.ensure_cards(conn, self.user_id, self.new_cards) if self.replace else counts[len(self.writes)]
        )


async def _plan_memory(
    conn: Executor,
    result: IngestionResult,
    thresholds: IngestionThresholds,
    summary: IngestionWriteSummary,
    *,
    replace: bool,
    held: set[str],
) -> _Memory:
    """Write the memory of `result` that later rows depend on (concepts, revisions of earlier units) and plan the
    rest (the new memory units, cards, growth events, relationships), which `_Memory.write` sends in one round trip.

    A memory unit that retells or updates an earlier one revises that unit (store/revise.py) instead of becoming a
    second one, and its relationships and growth events attach to it; if the earlier unit is gone by now it is
    written as a new unit, unless the user asked to forget it. A concept named by its handle with a new description
    has its description revised. Units the user asked to forget are never written again (a reprocess)."""
    user_id, conversation_id = result.user_id, result.conversation_id
    source = RevisionSource(conversation_id=conversation_id)
    ids: dict[EntityRef, str] = {}
    new_cards: list[NewCard] = []
    revised = revise.Revised()

    ensured = await concepts.ensure_concepts(
        conn,
        user_id,
        [
            NewConcept(
                name=draft.name,
                type=draft.type,
                description=draft.description,
                normalized_name=draft.normalized_name,
                existing_concept_id=draft.existing_concept_id,
            )
            for draft in result.concepts
        ],
    )
    descriptions: list[revise.DescriptionChange] = []
    for draft, concept in zip(result.concepts, ensured, strict=True):
        ids[EntityRef(kind=EntityKind.CONCEPT, key=draft.key)] = concept.concept_id
        if concept.created:
            summary.concepts_created += 1
            new_cards.append(
                NewCard(
                    card_type="concept",
                    source_entity_id=concept.concept_id,
                    source_entity_type="Concept",
                    display_data=concept_display(draft.name, draft.type, draft.description),
                )
            )
            continue
        summary.concepts_reused += 1
        if draft.revise_description and concept.concept_id not in held:
            descriptions.append(
                revise.DescriptionChange(concept.concept_id, draft.description, RevisionKind.UPDATED, source)
            )
    revised.add(await revise.revise_descriptions(conn, user_id, descriptions))

    fresh = [unit for unit in result.memory_units if unit.revises is None]
    earlier = [unit for unit in result.memory_units if unit.revises is not None]
    forgotten = await memory_revisions.forgotten_ids(
        conn,
        user_id,
        [
            *(memory_unit_id(conversation_id, u.key) for u in fresh if replace),
            *(u.revises for u in earlier if u.revises),
        ],
    )
    by_others = await revise.revise_units(
        conn, user_id, _earlier_changes(result, held, forgotten), card_importance=thresholds.card_importance
    )
    revised.add(by_others)
    dropped: set[str] = set()
    for unit in earlier:
        assert unit.revises is not None
        if unit.revises in forgotten:
            dropped.add(unit.key)
        elif unit.revises in by_others.missing:
            fresh.append(unit)  # the earlier unit was deleted while this conversation was read: it is new
        else:
            ids[EntityRef(kind=EntityKind.MEMORY_UNIT, key=unit.key)] = unit.revises
            summary.memory_units_retold += unit.revision is RevisionKind.RETOLD
            summary.memory_units_updated += unit.revision is RevisionKind.UPDATED
    summary.concepts_revised = len(revised.concepts)

    units = []
    for unit in fresh:
        muid = memory_unit_id(conversation_id, unit.key)
        if muid in forgotten:
            dropped.add(unit.key)
            continue
        ids[EntityRef(kind=EntityKind.MEMORY_UNIT, key=unit.key)] = muid
        if muid not in held:  # a unit another source revised since keeps what it became
            units.append((muid, unit))
    inserted_units = memory_units.inserting(
        user_id,
        [
            NewMemoryUnit(
                muid=muid,
                title=unit.title,
                content=unit.content,
                creation_ts=unit.creation_ts,
                importance_score=unit.importance_score,
                sentiment_score=unit.sentiment_score,
                source_conversation_id=conversation_id,
                metadata={"extraction_key": unit.key, "prompt_version": result.prompt_version, "model": result.model},
            )
            for muid, unit in units
        ],
        revise=replace,
    )
    for muid, unit in units:
        if unit.importance_score >= thresholds.card_importance:
            new_cards.append(
                NewCard(
                    card_type="memory",
                    source_entity_id=muid,
                    source_entity_type="MemoryUnit",
                    display_data=memory_display(unit.title, unit.content, unit.importance_score),
                )
            )

    def kept(*refs: EntityRef) -> bool:
        return all(ref.kind is not EntityKind.MEMORY_UNIT or ref.key not in dropped for ref in refs)

    events = [event for event in result.growth_events if kept(event.about)]
    inserted_events = growth_events.inserting(
        user_id,
        [
            NewGrowthEvent(
                entity_id=ids[event.about],
                entity_type=event.about.kind.value,
                dim_key=event.dim_key.value,
                delta=event.delta,
                source=GROWTH_SOURCE,
                details={"rationale": event.rationale, "source_conversation_id": conversation_id},
            )
            for event in events
        ],
    )
    summary.growth_events = len(events)
    relationships = [r for r in result.relationships if kept(r.source, r.target) and ids[r.source] != ids[r.target]]
    upserted_edges = knowledge_edges.upserting(
        user_id,
        [
            NewEdge(
                source_id=ids[relationship.source],
                source_type=relationship.source.kind.value,
                target_id=ids[relationship.target],
                target_type=relationship.target.kind.value,
                relationship_type=relationship.relationship_type.value,
                strength=relationship.strength,
                description=relationship.description,
                source_conversation_id=conversation_id,
            )
            for relationship in relationships
        ],
    )
    summary.relationships = len(relationships)
    return _Memory(
        changes=[
            *outbox.changes(NodeLabel.CONCEPT, (concept.concept_id for concept in ensured)),
            *outbox.changes(NodeLabel.MEMORY_UNIT, (muid for muid, _ in units)),
            *revised.changes(),
        ],
        user_id=user_id,
        units=units,
        new_cards=new_cards,
        replace=replace,
        writes=[inserted_units, inserted_events, upserted_edges],
    )
