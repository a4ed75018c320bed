"""The transactional outbox: how a write in Postgres reaches the graph and vector stores without ever being lost.

A writer calls `record_changes(conn, user_id, changes)` inside the transaction that changed those entities
(ingestion's write, the cycle agents' writes, a merge, a forget). Each change becomes one row per derived store in
runtime.outbox; the sync dispatcher (jobs/sync.py) later makes each store match Postgres for that entity. Because a
row only names the entity, replays and reordering are harmless: the dispatcher always projects the entity's current
rows, or deletes it from the store when it no longer exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.vocabulary import NodeLabel
from store.postgres import Executor
from store.repos._base import row_count

STORES: tuple[str, ...] = ("graph", "vector")
"""The derived stores; each has its own rows, so one that is down delays only itself."""


@dataclass(frozen=True)
class Change:
    """An entity whose rows changed (created, updated, merged or deleted) in the current transaction."""

    label: NodeLabel
    entity_id: str


def changes(label: NodeLabel, entity_ids: Iterable[str]) -> list[Change]:
    return [Change(label, entity_id) for entity_id in entity_ids]


async def record_changes(
    conn: Executor, user_id: str, changed: Iterable[Change], *, stores: Sequence[str] = STORES
) -> int:
    """One outbox row per distinct change and store; call it in the transaction that made the changes. `stores`
    narrows it to some stores (reconcile repairs only the store that drifted)."""
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
        list(stores),
        labels,
        ids,
    )
    return len(distinct) * len(stores)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    user_id: str
    label: NodeLabel
    entity_id: str
    attempts: int


async def claim(db: Executor, store: str, *, limit: int, lease_s: float) -> list[OutboxRow]:
    """Take up to `limit` due rows of `store`, oldest first, and hide them from other dispatchers for `lease_s`
    (a dispatcher that dies mid-batch leaves them to be claimed again when the lease lapses)."""
    rows = await db.fetch(
        "UPDATE runtime.outbox o SET next_attempt_at = now() + make_interval(secs => $3) "
        "WHERE o.id IN (SELECT id FROM runtime.outbox WHERE store = $1 AND next_attempt_at <= now() "
        "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "RETURNING o.id, o.user_id, o.label, o.entity_id, o.attempts",
        store,
        limit,
        lease_s,
    )
    found = [OutboxRow(r["id"], r["user_id"], NodeLabel(r["label"]), r["entity_id"], r["attempts"]) for r in rows]
    return sorted(found, key=lambda row: row.id)


async def applied(db: Executor, ids: Iterable[int]) -> None:
    """The store matches Postgres for these rows' entities: they are done."""
    await db.execute("DELETE FROM runtime.outbox WHERE id = ANY($1::bigint[])", list(ids))


async def failed(db: Executor, ids: Iterable[int], *, error: str, delay_s: float) -> None:
    """The store refused or was away: try these rows again after `delay_s`, keeping the error for `sync status`."""
    await db.execute(
        "UPDATE runtime.outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2), "
        "last_error = $3 WHERE id = ANY($1::bigint[])",
        list(ids),
        delay_s,
        error[:500],
    )


async def retry_now(db: Executor, store: str) -> int:
    """Make the rows of `store` that are waiting out a backoff due now (`run.py sync run`, once a store is back)."""
    return row_count(
        await db.execute(
            "UPDATE runtime.outbox SET next_attempt_at = now() "
            "WHERE store = $1 AND attempts > 0 AND next_attempt_at > now()",
            store,
        )
    )


@dataclass(frozen=True)
class Backlog:
    """What one store still has to apply: rows, entities among them that failed at least once, the oldest row's age."""

    store: str
    rows: int
    failing: int
    oldest_lag_s: float
    last_error: str | None


async def backlog(db: Executor) -> list[Backlog]:
    rows = await db.fetch(
        "SELECT s.store, count(o.id) AS rows, count(o.id) FILTER (WHERE o.attempts > 0) AS failing, "
        "coalesce(extract(epoch FROM now() - min(o.created_at)), 0)::float8 AS lag, "
        "(array_agg(o.last_error ORDER BY o.id DESC) FILTER (WHERE o.last_error IS NOT NULL))[1] AS last_error "
        "FROM unnest($1::text[]) AS s(store) LEFT JOIN runtime.outbox o ON o.store = s.store GROUP BY s.store "
        "ORDER BY s.store",
        list(STORES),
    )
    return [Backlog(r["store"], r["rows"], r["failing"], round(r["lag"], 3), r["last_error"]) for r in rows]


async def delete_user_rows(db: Executor, user_id: str) -> int:
    """Forget a user's pending rows (after their entities are gone from every store)."""
    return row_count(await db.execute("DELETE FROM runtime.outbox WHERE user_id = $1", user_id))


async def next_due(db: Executor, store: str, *, below_attempts: int) -> datetime | None:
    """When the earliest row of `store` waiting in its backoff (failed fewer than `below_attempts` times) falls due;
    None when none waits."""
    value: datetime | None = await db.fetchval(
        "SELECT min(next_attempt_at) FROM runtime.outbox WHERE store = $1 AND next_attempt_at > now() "
        "AND attempts < $2",
        store,
        below_attempts,
    )
    return value
