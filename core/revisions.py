"""How memory is revised (DESIGN.md invariant 8): the kinds of revision, where one comes from, its deterministic id,
and the pure rules that compute a memory unit's new state from a retelling, a changed fact or a correction.

Both sides share these: the agents say *that* a memory is retold or updated (by a handle), the store applies the
rules here in the transaction that writes the revision row (store/repos/memory_revisions.py), and `run.py memory
history` and the web app read the rows. A revision keeps the values it replaced (`before`) next to the ones it set
(`after`), with when and why (the source conversation or the user's interaction), so nothing is overwritten silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.vocabulary import EntityKind

REVISION_NAMESPACE = uuid.UUID("0b7f1f2e-5a3c-4c8e-9d61-7e2a4b9c3d15")
"""uuid5 namespace of revision ids. Never change it: every stored revision id is derived from it."""


class RevisionKind(StrEnum):
    """Why a memory unit or concept changed (memory_revisions.kind)."""

    RETOLD = "retold"
    """A later conversation told the same event again: one memory unit remains, enriched (merged content, the higher
    importance, the earlier creation time, every source conversation)."""
    UPDATED = "updated"
    """A later conversation changed what is true: a memory unit's text, or a concept's description."""
    CORRECTED = "corrected"
    """The user corrected it (a memory's text or importance, a concept's description) through the web app."""
    FORGOTTEN = "forgotten"
    """The user asked to forget a memory unit (or said it is wrong): the unit and its earlier revisions are gone;
    this row keeps only when and why, never the text."""
    ADDED = "added"
    """The user's reflection became a new memory unit."""


@dataclass(frozen=True)
class RevisionSource:
    """Why a revision was made: a conversation (ingestion) or one of the user's interaction_logs rows (corrections)."""

    conversation_id: str | None = None
    interaction_id: str | None = None

    def __post_init__(self) -> None:
        if (self.conversation_id is None) == (self.interaction_id is None):
            raise ValueError("a revision comes from one conversation or one interaction")

    @property
    def key(self) -> str:
        return (
            f"conversation:{self.conversation_id}"
            if self.conversation_id is not None
            else f"interaction:{self.interaction_id}"
        )


def revision_id(user_id: str, source: RevisionSource, entity_type: EntityKind, entity_id: str) -> str:
    """One revision per source and entity: a rerun, a duplicate delivery or a reprocess of the same source writes the
    same row again instead of a second one."""
    return str(uuid.uuid5(REVISION_NAMESPACE, f"{user_id}\x1f{source.key}\x1f{entity_type.value}\x1f{entity_id}"))


RevisionValue = str | float | None
"""A revised field's value as stored in `before` / `after`: text, a number, a point in time as ISO 8601 UTC."""


@dataclass(frozen=True)
class MemoryState:
    """The fields of a memory unit a revision may change."""

    title: str
    content: str
    creation_ts: datetime
    importance_score: float | None
    sentiment_score: float | None


@dataclass(frozen=True)
class Told:
    """What a later conversation says of an earlier memory: the model's text for it, its importance and time."""

    title: str
    content: str
    creation_ts: datetime
    importance_score: float
    sentiment_score: float


def retold(current: MemoryState, told: Told) -> MemoryState:
    """The same event told again: the model's merged text, the higher importance, the earlier time, the sentiment
    it had (a retelling adds detail; a changed feeling about it is an update)."""
    importance = told.importance_score if current.importance_score is None else current.importance_score
    return MemoryState(
        title=told.title,
        content=told.content,
        creation_ts=min(current.creation_ts, told.creation_ts),
        importance_score=max(importance, told.importance_score),
        sentiment_score=current.sentiment_score,
    )


def updated(current: MemoryState, told: Told) -> MemoryState:
    """The fact changed: the new text, time, importance and sentiment are the memory's now."""
    return MemoryState(
        title=told.title,
        content=told.content,
        creation_ts=told.creation_ts,
        importance_score=told.importance_score,
        sentiment_score=told.sentiment_score,
    )


def told_again(kind: RevisionKind, told: Told) -> Callable[[MemoryState], MemoryState]:
    """The rule for a later conversation's `told` version of a memory: `retold` or `updated`."""
    if kind is RevisionKind.RETOLD:
        return lambda current: retold(current, told)
    if kind is RevisionKind.UPDATED:
        return lambda current: updated(current, told)
    raise ValueError(f"a conversation retells or updates a memory, it does not make it {kind.value!r}")


def corrected(current: MemoryState, *, title: str | None, content: str | None, importance: float | None) -> MemoryState:
    """The user's correction: what they changed replaces what was there, the rest stays."""
    return replace(
        current,
        title=title if title is not None else current.title,
        content=content if content is not None else current.content,
        importance_score=importance if importance is not None else current.importance_score,
    )


def stored_value(value: Any) -> RevisionValue:
    """A field's value as a revision stores it: datetimes as ISO 8601 UTC text, numbers and text as they are."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if value is None or isinstance(value, str | float | int):
        return value
    raise TypeError(f"a revision cannot store a {type(value).__name__}")


def changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, RevisionValue], dict[str, RevisionValue]]:
    """(before, after) limited to the fields whose value differs, in their stored form; two empty dicts: no change."""
    old = {name: stored_value(value) for name, value in before.items()}
    new = {name: stored_value(value) for name, value in after.items()}
    differing = [name for name in new if old.get(name) != new[name]]
    return {name: old.get(name) for name in differing}, {name: new[name] for name in differing}


def memory_fields(state: MemoryState) -> dict[str, Any]:
    return {
        "title": state.title,
        "content": state.content,
        "creation_ts": state.creation_ts,
        "importance_score": state.importance_score,
        "sentiment_score": state.sentiment_score,
    }


def restored(current: MemoryState, before: Mapping[str, Any]) -> MemoryState:
    """`current` with the fields a revision replaced put back (a reprocess undoing its own conversation's revision
    before it applies the new extraction)."""
    values = memory_fields(current)
    for name, value in before.items():
        if name not in values:
            continue
        if name == "creation_ts" and isinstance(value, str):
            values[name] = datetime.fromisoformat(value)
        else:
            values[name] = value
    return MemoryState(**values)
