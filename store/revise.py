"""Revising memory inside a caller's transaction (ingestion's write, the corrections job's write): a memory unit
retold, updated or corrected, a concept's description revised, a memory unit forgotten, a reprocessed conversation's
own revisions undone. Each writes its revision row (store/repos/memory_revisions.py) with the values it replaced,
refreshes the cards that show the entity, and says what changed for the outbox; the rules for the new values are
core/revisions.py's. No SQL here: this module composes repository calls (docs/store.md, one write path per table).

Why reprocessing undoes only its own latest revisions: a conversation reprocessed after another source revised the
same entity (a later conversation, the user's correction) must not overwrite what came after it. Such an entity is
"held": its revision from this conversation stays as history, and the new extraction leaves the entity as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from core.revisions import MemoryState, RevisionKind, RevisionSource, changes, memory_fields, restored
from core.vocabulary import EntityKind, NodeLabel
from store import outbox
from store.postgres import Executor
from store.repos import (
    cards,
    concepts,
    derived_artifacts,
    growth_events,
    knowledge_edges,
    memory_revisions,
    memory_units,
)
from store.repos._base import utc_now
from store.repos.cards import NewCard, memory_display
from store.repos.concepts import ConceptRecord
from store.repos.memory_revisions import MemoryRevisionRecord, NewRevision
from store.repos.memory_units import MemoryUnitRecord, RevisedMemoryUnit


@dataclass(frozen=True)
class UnitChange:
    """A revision to make to one memory unit: `apply` gives its new state from its current one."""

    muid: str
    kind: RevisionKind
    source: RevisionSource
    apply: Callable[[MemoryState], MemoryState]


@dataclass(frozen=True)
class DescriptionChange:
    """A concept's new description, and why."""

    concept_id: str
    description: str | None
    kind: RevisionKind
    source: RevisionSource


@dataclass
class Revised:
    """What the revisions of one transaction did: the entities changed or deleted and the revision rows written or
    deleted (all for the outbox), and the memory units asked for that no longer exist."""

    memory_units: set[str] = field(default_factory=set)
    concepts: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    touched: set[tuple[NodeLabel, str]] = field(default_factory=set)
    """Other entities whose rows changed as a side effect (an artifact that cited a forgotten memory, the other end
    of one of its relationships)."""

    def changes(self) -> list[outbox.Change]:
        return [
            *outbox.changes(NodeLabel.MEMORY_UNIT, sorted(self.memory_units)),
            *outbox.changes(NodeLabel.CONCEPT, sorted(self.concepts)),
            *outbox.changes(NodeLabel.REVISION, sorted(self.revisions)),
            *(outbox.Change(label, entity_id) for label, entity_id in sorted(self.touched)),
        ]

    def add(self, other: Revised) -> None:
        self.memory_units |= other.memory_units
        self.concepts |= other.concepts
        self.revisions |= other.revisions
        self.missing |= other.missing
        self.touched |= other.touched


def memory_state(record: MemoryUnitRecord) -> MemoryState:
    return MemoryState(
        title=record.title,
        content=record.content,
        creation_ts=record.creation_ts,
        importance_score=record.importance_score,
        sentiment_score=record.sentiment_score,
    )


def _revised_unit(muid: str, state: MemoryState, sources: list[str]) -> RevisedMemoryUnit:
    return RevisedMemoryUnit(muid=muid, source_conversation_ids=sources, **memory_fields(state))


async def revise_units(
    conn: Executor, user_id: str, wanted: Sequence[UnitChange], *, card_importance: float | None
) -> Revised:
    """Apply the changes in order to their memory units (locked first), one revision row per source and unit with
    the values that source replaced. A retelling is recorded even when it changed no value (it adds its conversation
    to the unit's sources); another change that changes nothing writes nothing. A unit that now reaches
    `card_importance` gets the card it lacked."""
    done = Revised()
    records = {r.muid: r for r in await memory_units.lock_memory_units(conn, user_id, [c.muid for c in wanted])}
    states = {muid: memory_state(record) for muid, record in records.items()}
    sources = {muid: record.source_conversation_ids for muid, record in records.items()}
    starts: dict[tuple[str, str], MemoryState] = {}
    ends: dict[tuple[str, str], tuple[UnitChange, MemoryState]] = {}
    for change in wanted:
        if change.muid not in records:
            done.missing.add(change.muid)
            continue
        key = (change.source.key, change.muid)
        starts.setdefault(key, states[change.muid])
        states[change.muid] = change.apply(states[change.muid])
        ends[key] = (change, states[change.muid])
        conversation = change.source.conversation_id
        if conversation is not None and conversation not in sources[change.muid]:
            sources[change.muid] = [*sources[change.muid], conversation]
    rows: list[NewRevision] = []
    for key, (change, end) in ends.items():
        before, after = changes(memory_fields(starts[key]), memory_fields(end))
        if before or change.kind is RevisionKind.RETOLD:
            rows.append(
                NewRevision(
                    entity_type=EntityKind.MEMORY_UNIT,
                    entity_id=change.muid,
                    kind=change.kind,
                    source=change.source,
                    before=before,
                    after=after,
                )
            )
    revised = sorted({row.entity_id for row in rows})
    await memory_units.revise_memory_units(
        conn, user_id, [_revised_unit(muid, states[muid], sources[muid]) for muid in revised]
    )
    done.revisions |= set(await memory_revisions.upsert_revisions(conn, user_id, rows))
    done.memory_units |= set(revised)
    current = [records[muid].model_copy(update=memory_fields(states[muid])) for muid in revised]
    await _refresh_memory_cards(conn, user_id, current, card_importance)
    return done


async def _refresh_memory_cards(
    conn: Executor, user_id: str, revised: Sequence[MemoryUnitRecord], card_importance: float | None
) -> None:
    """Revised memory units' cards show their current values; one that reaches `card_importance` gets a card."""
    displays = {u.muid: memory_display(u.title, u.content, u.importance_score) for u in revised}
    await cards.refresh_display(conn, user_id, EntityKind.MEMORY_UNIT.value, displays)
    if card_importance is None:
        return
    worthy = [u for u in revised if (u.importance_score or 0) >= card_importance]
    await cards.ensure_cards(
        conn,
        user_id,
        [
            NewCard(
                card_type="memory",
                source_entity_id=u.muid,
                source_entity_type="MemoryUnit",
                display_data=displays[u.muid],
            )
            for u in worthy
        ],
    )


def same_text(a: str | None, b: str | None) -> bool:
    """Two descriptions say the same when they differ only in spacing (a model repeating what it was shown)."""
    return " ".join((a or "").split()) == " ".join((b or "").split())


async def revise_descriptions(conn: Executor, user_id: str, wanted: Sequence[DescriptionChange]) -> Revised:
    """Give concepts new descriptions in order (each locked first), one revision row per source and concept that
    changed; a description that already says it (up to spacing), or a concept that is gone, is left alone."""
    done = Revised()
    records = {r.concept_id: r for r in await concepts.lock_concepts(conn, user_id, [c.concept_id for c in wanted])}
    current = {concept_id: record.description for concept_id, record in records.items()}
    starts: dict[tuple[str, str], str | None] = {}
    ends: dict[tuple[str, str], DescriptionChange] = {}
    for change in wanted:
        if change.concept_id not in current or same_text(current[change.concept_id], change.description):
            continue
        key = (change.source.key, change.concept_id)
        starts.setdefault(key, current[change.concept_id])
        current[change.concept_id] = change.description
        ends[key] = change
    rows = [
        NewRevision(
            entity_type=EntityKind.CONCEPT,
            entity_id=change.concept_id,
            kind=change.kind,
            source=change.source,
            before={"description": starts[key]},
            after={"description": change.description},
        )
        for key, change in ends.items()
    ]
    changed = {row.entity_id: current[row.entity_id] for row in rows}
    await concepts.set_descriptions(conn, user_id, changed, at=utc_now())
    done.revisions |= set(await memory_revisions.upsert_revisions(conn, user_id, rows))
    done.concepts |= set(changed)
    await cards.refresh_display(
        conn, user_id, EntityKind.CONCEPT.value, {cid: {"description": text} for cid, text in changed.items()}
    )
    return done


async def forget_units(conn: Executor, user_id: str, source: RevisionSource, muids: Sequence[str]) -> Revised:
    """The user asked to forget these memory units (or said they are wrong): each goes with its card, growth events,
    relationships and earlier revisions, the artifacts citing it are told, and one `forgotten` revision keeps when
    and why, never the text. A reprocess of its conversation does not bring it back (memory_revisions.forgotten_ids)."""
    done = Revised()
    present = [r.muid for r in await memory_units.lock_memory_units(conn, user_id, muids)]
    done.missing |= set(muids) - set(present)
    if not present:
        return done
    artifacts = await derived_artifacts.drop_memory_unit_sources(conn, user_id, present)
    done.touched |= {(NodeLabel.DERIVED_ARTIFACT, artifact_id) for artifact_id in artifacts}
    ends = await knowledge_edges.delete_edges_touching(conn, user_id, present)
    done.touched |= {(NodeLabel(kind), entity_id) for kind, entity_id in ends if kind in _KNOWLEDGE}
    await growth_events.delete_growth_events_about(conn, user_id, present)
    await cards.delete_cards_for_entities(conn, user_id, present)
    done.revisions |= set(await memory_revisions.delete_history(conn, user_id, present))
    done.memory_units |= set(await memory_units.delete_memory_units(conn, user_id, present))
    tombstones = [
        NewRevision(entity_type=EntityKind.MEMORY_UNIT, entity_id=muid, kind=RevisionKind.FORGOTTEN, source=source)
        for muid in present
    ]
    done.revisions |= set(await memory_revisions.upsert_revisions(conn, user_id, tombstones))
    return done


_KNOWLEDGE = {NodeLabel.MEMORY_UNIT.value, NodeLabel.CONCEPT.value}


@dataclass
class Undone:
    """What undoing a conversation's own revisions did (`changed`), and the entities it had to leave as they are
    because a later source revised them too (`held`)."""

    changed: Revised = field(default_factory=Revised)
    held: set[str] = field(default_factory=set)


def latest(revisions: Iterable[MemoryRevisionRecord]) -> dict[str, MemoryRevisionRecord]:
    """entity id -> its latest revision (by time, then id: equal times order alike everywhere)."""
    found: dict[str, MemoryRevisionRecord] = {}
    for revision in sorted(revisions, key=lambda r: (r.created_at, r.revision_id)):
        found[revision.entity_id] = revision
    return found


async def undo_conversation(conn: Executor, user_id: str, conversation_id: str) -> Undone:
    """Before a reprocess writes a conversation's new extraction: each revision the conversation made that is still
    its entity's latest is undone (the values it replaced put back, the conversation taken out of the unit's
    sources, the row deleted); one that a later source followed stays, and its entity is held."""
    undone = Undone()
    own = await memory_revisions.revisions_from_conversation(conn, user_id, conversation_id)
    if not own:
        return undone
    newest = latest(await memory_revisions.revisions_of(conn, user_id, {r.entity_id for r in own}))
    undo = [r for r in own if newest[r.entity_id].revision_id == r.revision_id]
    undone.held = {r.entity_id for r in own} - {r.entity_id for r in undo}
    unit_ids = [r.entity_id for r in undo if r.entity_type == EntityKind.MEMORY_UNIT.value]
    records = {r.muid: r for r in await memory_units.lock_memory_units(conn, user_id, unit_ids)}
    units = [
        _revised_unit(
            r.entity_id,
            restored(memory_state(records[r.entity_id]), r.before),
            [s for s in records[r.entity_id].source_conversation_ids if s != conversation_id],
        )
        for r in undo
        if r.entity_id in records
    ]
    await memory_units.revise_memory_units(conn, user_id, units)
    await cards.refresh_display(
        conn,
        user_id,
        EntityKind.MEMORY_UNIT.value,
        {u.muid: memory_display(u.title, u.content, u.importance_score) for u in units},
    )
    descriptions = {
        r.entity_id: r.before.get("description")
        for r in undo
        if r.entity_type == EntityKind.CONCEPT.value and "description" in r.before
    }
    await concepts.set_descriptions(conn, user_id, descriptions, at=utc_now())
    await cards.refresh_display(
        conn, user_id, EntityKind.CONCEPT.value, {cid: {"description": text} for cid, text in descriptions.items()}
    )
    deleted = await memory_revisions.delete_revisions(conn, user_id, [r.revision_id for r in undo])
    undone.changed.memory_units |= {u.muid for u in units}
    undone.changed.concepts |= set(descriptions)
    undone.changed.revisions |= set(deleted)
    return undone


async def as_first_seen(
    conn: Executor,
    user_id: str,
    conversation_id: str,
    concept_rows: Sequence[ConceptRecord],
    unit_rows: Sequence[MemoryUnitRecord],
) -> tuple[list[ConceptRecord], list[MemoryUnitRecord]]:
    """These concepts and memory units as the conversation first saw them: those it revised (and no later source
    did since) with the values its revision replaced. A reprocess shows the model these, so it decides again from
    what was there, not from its own earlier answer: seeing its own update as the current text, a model would say
    nothing changed, and the undo would lose the update."""
    if not concept_rows and not unit_rows:
        return [], []  # nothing recalled (a user's first conversations): nothing to restore, no round trip
    own = await memory_revisions.revisions_from_conversation(conn, user_id, conversation_id)
    if not own:
        return list(concept_rows), list(unit_rows)
    newest = latest(await memory_revisions.revisions_of(conn, user_id, {r.entity_id for r in own}))
    undo = {r.entity_id: r.before for r in own if newest[r.entity_id].revision_id == r.revision_id}
    units = [
        u.model_copy(update=memory_fields(restored(memory_state(u), undo[u.muid]))) if u.muid in undo else u
        for u in unit_rows
    ]
    found = [
        c.model_copy(update={"description": undo[c.concept_id]["description"]})
        if "description" in undo.get(c.concept_id, {})
        else c
        for c in concept_rows
    ]
    return found, units


async def revised_by_others(
    conn: Executor, user_id: str, entity_ids: Iterable[str], source: RevisionSource
) -> set[str]:
    """Which of these entities another source revised (a reprocess of the conversation that made them leaves those
    as they are: overwriting them would lose what came after)."""
    return {
        r.entity_id
        for r in await memory_revisions.revisions_of(conn, user_id, entity_ids)
        if r.source_key != source.key
    }
