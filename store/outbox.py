"""The transactional outbox: how a write in Postgres reaches the graph and vector stores without ever being lost.

A writer calls `record_changes(conn, user_id, changes)` inside the transaction that changed those entities
(ingestion's write, the cycle agents' writes, a merge, a forget). Each change becomes one row per derived store in
runtime.outbox; the sync dispatcher (jobs/sync.py) later makes each store match Postgres for that entity. Because a
row only names the entity, replays and reordering are harmless: the dispatcher always projects the entity's current
rows, or deletes it from the store when it no longer exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.vocabulary import NodeLabel
from store.postgres import Executor

STORES: tuple[str, ...] = ("graph", "vector")
"""The derived stores; each has its own rows, so one that is down delays only itself."""


@dataclass(frozen=True)
class Change:
    """An entity whose rows changed (created, updated, merged or deleted) in the current transaction."""

    label: NodeLabel
    entity_id: str


def changes(label: NodeLabel, entity_ids: Iterable[str]) -> list[Change]:
    return [Change(label, entity_id) for entity_id in entity_ids]


async def record_changes(conn: Executor, user_id: str, changed: Iterable[Change]) -> int:
    """One outbox row per distinct change and store; call it in the transaction that made the changes."""
    distinct = sorted({(c.label.value, c.entity_id) for c in changed})
    if not distinct:
        return 0
    labels = [label for label, _ in distinct]
    ids = [entity_id for _, entity_id in distinct]
    await conn.execute(
        "INSERT INTO runtime.outbox (store, user_id, label, entity_id) "
        "SELECT s.store, $1, c.label, c.entity_id "
        "FROM unnest($2::text[]) AS s(store) CROSS JOIN unnest($3::text[], $4::text[]) AS c(label, entity_id)",
        user_id,
        list(STORES),
        labels,
        ids,
    )
    return len(distinct) * len(STORES)
