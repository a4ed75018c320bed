"""The corrections job's reads and its one transaction: what a batch of the user's interactions is about, and the
revisions its decisions make (issue 19, item 5).

A correction revises a memory unit or a concept's description, or forgets a memory unit; a reflection may add a
memory unit; each is a revision row whose source is the interaction (store/revise.py, core/revisions.py). The
interactions are settled (runtime.consumed_interactions) in the same transaction, so a batch is applied once: a rerun
after a success finds nothing pending, a rerun after a crash applies the same decisions to the same ids (revision ids
and an added unit's id derive from the interaction), never a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core.corrections import CARD_TARGET, CorrectionAction, CorrectionDecision
from core.revisions import REVISION_NAMESPACE, RevisionKind, RevisionSource, corrected, stored_value
from core.vocabulary import EntityKind, NodeLabel
from store import outbox, revise
from store.postgres import Executor
from store.repos import cards, consumed_interactions, memory_revisions, memory_units
from store.repos._base import transaction, utc_now
from store.repos.cards import NewCard, memory_display
from store.repos.consumed_interactions import InteractionRecord
from store.repos.memory_revisions import NewRevision
from store.repos.memory_units import NewMemoryUnit
from store.sync import read_records


@dataclass(frozen=True)
class Targets:
    """What a batch's interactions are about: the user's memory units and concepts they name (a card's by its
    entity), by id, and each interaction's target entity id (None: none, or one that is not the user's)."""

    memory_units: dict[str, Any]
    concepts: dict[str, Any]
    of: dict[str, str | None]


async def read_targets(db: Executor, user_id: str, batch: Sequence[InteractionRecord]) -> Targets:
    """The user's entities the interactions name; a card stands for the entity it shows. Ids of another user's rows
    or of nothing read as no target."""
    card_ids = {i.target_entity_id for i in batch if i.target_entity_type == CARD_TARGET and i.target_entity_id}
    shown = {c.card_id: c.source_entity_id for c in await cards.list_cards(db, user_id) if c.card_id in card_ids}
    named = {
        i.interaction_id: shown.get(i.target_entity_id or "")
        if i.target_entity_type == CARD_TARGET
        else i.target_entity_id
        for i in batch
    }
    ids = sorted({entity_id for entity_id in named.values() if entity_id})
    units = await read_records(db, user_id, NodeLabel.MEMORY_UNIT, ids)
    concept_rows = await read_records(db, user_id, NodeLabel.CONCEPT, ids)
    of = {
        key: entity_id if entity_id in units or entity_id in concept_rows else None for key, entity_id in named.items()
    }
    return Targets(units, concept_rows, of)


def added_memory_id(interaction_id: str) -> str:
    """The id of the memory unit a reflection adds: the same on every run of the same decision."""
    return str(uuid.uuid5(REVISION_NAMESPACE, f"added\x1f{interaction_id}"))


@dataclass
class CorrectionsSummary:
    applied: int = 0
    ignored: int = 0
    failed: int = 0
    revisions: int = 0
    outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"applied": self.applied, "ignored": self.ignored, "failed": self.failed, "revisions": self.revisions}


async def write_corrections(
    db: Executor,
    user_id: str,
    batch: Sequence[str],
    decisions: Sequence[CorrectionDecision],
    *,
    card_importance: float,
) -> CorrectionsSummary:
    """Apply the decisions and settle every interaction of `batch` in one transaction: applied, ignored (the model
    decided nothing, or `none`) or failed (what it named is gone). Only the user's interactions still pending are
    applied: a run that finished first settled the others, and another user's are never this user's to apply."""
    async with transaction(db) as conn:
        pending = await consumed_interactions.lock_pending(conn, user_id, batch)
        outcomes, units, descriptions, forgets, added = _sort([d for d in decisions if d.interaction_id in pending])
        outcomes = {key: ("ignored", "no decision") for key in batch if key in pending} | outcomes
        revised = await revise.revise_units(conn, user_id, units, card_importance=card_importance)
        revised.add(await revise.revise_descriptions(conn, user_id, descriptions))
        for decision in forgets:
            assert decision.target_id is not None
            source = RevisionSource(interaction_id=decision.interaction_id)
            forgotten = await revise.forget_units(conn, user_id, source, [decision.target_id])
            revised.add(forgotten)
        for change in units:
            if change.muid in revised.missing:
                outcomes[change.source.interaction_id or ""] = ("failed", "the memory it corrects is gone")
        for decision in forgets:
            if decision.target_id in revised.missing:
                outcomes[decision.interaction_id] = ("failed", "the memory it forgets is gone")
        revised.add(await _add_memories(conn, user_id, added, card_importance))
        await consumed_interactions.settle_interactions(conn, user_id, outcomes, at=utc_now())
        await outbox.record_changes(conn, user_id, revised.changes())
    summary = CorrectionsSummary(outcomes=outcomes, revisions=len(revised.revisions))
    for state, _ in outcomes.values():
        setattr(summary, state, getattr(summary, state) + 1)
    return summary


def _sort(
    decisions: Sequence[CorrectionDecision],
) -> tuple[
    dict[str, tuple[str, str | None]],
    list[revise.UnitChange],
    list[revise.DescriptionChange],
    list[CorrectionDecision],
    list[CorrectionDecision],
]:
    """The decisions by what they do: (outcomes so far, memory revisions, description revisions, forgets, adds)."""
    outcomes: dict[str, tuple[str, str | None]] = {}
    units: list[revise.UnitChange] = []
    descriptions: list[revise.DescriptionChange] = []
    forgets: list[CorrectionDecision] = []
    added: list[CorrectionDecision] = []
    for decision in decisions:
        source = RevisionSource(interaction_id=decision.interaction_id)
        outcomes[decision.interaction_id] = ("applied", decision.reason)
        if decision.action is CorrectionAction.NONE:
            outcomes[decision.interaction_id] = ("ignored", decision.reason)
        elif decision.action is CorrectionAction.REVISE_MEMORY and decision.target_id:
            rule = partial(corrected, title=decision.title, content=decision.content, importance=decision.importance)
            units.append(revise.UnitChange(decision.target_id, RevisionKind.CORRECTED, source, rule))
        elif decision.action is CorrectionAction.REVISE_CONCEPT and decision.target_id:
            descriptions.append(
                revise.DescriptionChange(decision.target_id, decision.description, RevisionKind.CORRECTED, source)
            )
        elif decision.action is CorrectionAction.FORGET_MEMORY and decision.target_id:
            forgets.append(decision)
        elif decision.action is CorrectionAction.ADD_MEMORY:
            added.append(decision)
    return outcomes, units, descriptions, forgets, added


async def _add_memories(
    conn: Executor, user_id: str, added: Sequence[CorrectionDecision], card_importance: float
) -> revise.Revised:
    """The memory units reflections add, each with an `added` revision keeping what it set, and its card when it is
    important enough."""
    done = revise.Revised()
    if not added:
        return done
    now = utc_now()
    new = [
        NewMemoryUnit(
            muid=added_memory_id(d.interaction_id),
            title=d.title or "",
            content=d.content or "",
            creation_ts=now,
            importance_score=d.importance,
            sentiment_score=None,
            source_conversation_id=None,
            metadata={"source_interaction_id": d.interaction_id},
        )
        for d in added
    ]
    await memory_units.insert_memory_units(conn, user_id, new, revise=True)
    rows = [
        NewRevision(
            entity_type=EntityKind.MEMORY_UNIT,
            entity_id=unit.muid or "",
            kind=RevisionKind.ADDED,
            source=RevisionSource(interaction_id=d.interaction_id),
            after={
                "title": unit.title,
                "content": unit.content,
                "importance_score": stored_value(unit.importance_score),
            },
        )
        for d, unit in zip(added, new, strict=True)
    ]
    done.revisions |= set(await memory_revisions.upsert_revisions(conn, user_id, rows))
    done.memory_units |= {unit.muid or "" for unit in new}
    await cards.ensure_cards(
        conn,
        user_id,
        [
            NewCard(
                card_type="memory",
                source_entity_id=unit.muid or "",
                source_entity_type="MemoryUnit",
                display_data=memory_display(unit.title, unit.content, unit.importance_score),
            )
            for unit in new
            if (unit.importance_score or 0) >= card_importance
        ],
    )
    return done
