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
from typing import Any

from core.vocabulary import NodeLabel
from store.postgres import Executor
from store.repos._base import Write, apply, row_count

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
    narrows it to some stores (reconcile repairs only the store that drifted). Returns the rows recorded."""
    return await apply(conn, recording(user_id, changed, stores=stores))


def recording(user_id: str, changed: Iterable[Change], *, stores: Sequence[str] = STORES) -> Write | None:
    """`record_changes` as a Write, to send with others (None: no change)."""
    distinct = sorted({(c.label.value, c.entity_id) for c in changed})
    if not distinct:
        return None
    return Write(
        "INSERT INTO runtime.outbox (store, user_id, label, entity_id) "
        "SELECT s.store, $1, c.label, c.entity_id "
        "FROM unnest($2::text[]) AS s(store) CROSS JOIN unnest($3::text[], $4::text[]) AS c(label, entity_id)",
        (user_id, list(stores), [label for label, _ in distinct], [entity_id for _, entity_id in distinct]),
    )


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


async def pending(db: Executor, store: str, user_id: str, label: NodeLabel, entity_ids: Iterable[str]) -> set[str]:
    """Which of the user's `entity_ids` still wait to be applied to `store`: what a read of that store cannot find
    yet (ingestion shows the model the newest memory units the vector store does not hold yet)."""
    wanted = sorted(set(entity_ids))
    if not wanted:
        return set()
    rows = await db.fetch(
        "SELECT DISTINCT entity_id FROM runtime.outbox WHERE store = $1 AND user_id = $2 AND label = $3 "
        "AND entity_id = ANY($4::text[])",
        store,
        user_id,
        label.value,
        wanted,
    )
    return {row["entity_id"] for row in rows}


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
    """Make the rows of `store` that wait (out a backoff, or for the store's next try) due now, and that try
    immediate (`run.py sync run`, once a store is back)."""
    updated = await db.execute(
        "WITH st AS (SELECT retry_at FROM runtime.sync_state WHERE store = $1), "
        "now_due AS (UPDATE runtime.sync_state SET retry_at = now() WHERE store = $1 AND retry_at > now()) "
        "UPDATE runtime.outbox SET next_attempt_at = now() WHERE store = $1 AND next_attempt_at > now() "
        "AND (attempts > 0 OR next_attempt_at <= (SELECT retry_at FROM st))",
        store,
    )
    return row_count(updated)


# --- the store's own state, written as it happens ------------------------------------------------------------------


@dataclass(frozen=True)
class StoreState:
    """What the dispatcher last learned of one store (runtime.sync_state). `failing_since`, `failures` and
    `retry_at` describe the current run of failures of the store itself (away, timing out, its embedder down) and
    are cleared by its next success; `last_error` is the latest failure of any kind, a single user's included."""

    store: str
    failing_since: datetime | None
    failures: int
    retry_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_ok_at: datetime | None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


_STATE_COLUMNS = "store, failing_since, failures, retry_at, last_error, last_error_at, last_ok_at"


def _state(row: Any) -> StoreState:
    return StoreState(**{key: row[key] for key in _STATE_COLUMNS.split(", ")})


async def store_state(db: Executor, store: str) -> StoreState:
    return _state(await db.fetchrow(f"SELECT {_STATE_COLUMNS} FROM runtime.sync_state WHERE store = $1", store))


async def store_failed(
    db: Executor, store: str, *, error: str, claimed: Sequence[int], retry_base_s: float, retry_cap_s: float
) -> StoreState:
    """The store itself failed: count it, try it again after retry_base_s * 2^(failures so far) (at most
    retry_cap_s), and until then hold every row of the store that would fall due sooner (the claimed ones too), so
    that no dispatcher tries a store known to be away before its next try. One statement."""
    row = await db.fetchrow(
        "WITH st AS (UPDATE runtime.sync_state SET failing_since = coalesce(failing_since, now()), "
        "failures = failures + 1, "
        "retry_at = now() + make_interval(secs => least($3::float8, $2::float8 * 2 ^ failures)), "
        f"last_error = $4, last_error_at = now() WHERE store = $1 RETURNING {_STATE_COLUMNS}), "
        "held AS (UPDATE runtime.outbox SET next_attempt_at = (SELECT retry_at FROM st) WHERE store = $1 "
        "AND (next_attempt_at < (SELECT retry_at FROM st) OR id = ANY($5::bigint[]))) "
        "SELECT * FROM st",
        store,
        retry_base_s,
        retry_cap_s,
        error[:500],
        list(claimed),
    )
    return _state(row)


async def hold(db: Executor, store: str, *, until: datetime | None, claimed: Sequence[int] = ()) -> int:
    """Rows of `store` due before `until` (and the `claimed` ones) wait until then."""
    return row_count(
        await db.execute(
            "UPDATE runtime.outbox SET next_attempt_at = $2 "
            "WHERE store = $1 AND (next_attempt_at < $2 OR id = ANY($3::bigint[]))",
            store,
            until,
            list(claimed),
        )
    )


async def store_answered(db: Executor, store: str) -> None:
    """The store applied a batch: it is not failing (any more)."""
    await db.execute(
        "UPDATE runtime.sync_state SET failing_since = NULL, failures = 0, retry_at = NULL, last_ok_at = now() "
        "WHERE store = $1",
        store,
    )


async def note_error(db: Executor, store: str, error: str) -> None:
    """A failure that is one user's, not the store's (their rows wait with their own backoff): shown as the last
    error without marking the store failing."""
    await db.execute(
        "UPDATE runtime.sync_state SET last_error = $2, last_error_at = now() WHERE store = $1", store, error[:500]
    )


@dataclass(frozen=True)
class Backlog:
    """What one store still has to apply (rows, entities among them that failed at least once, the oldest row's
    age), and what its dispatcher last learned of it: failing for how long (None: it answers), how many tries in a
    row, the next try, and the last error of any kind with its age. Ages are by Postgres' clock."""

    store: str
    rows: int
    failing: int
    oldest_lag_s: float
    last_error: str | None
    failing_for_s: float | None = None
    store_failures: int = 0
    retry_in_s: float | None = None
    last_error_age_s: float | None = None

    @property
    def store_failing(self) -> bool:
        return self.failing_for_s is not None


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def backlog(db: Executor) -> list[Backlog]:
    rows = await db.fetch(
        "WITH pending AS (SELECT store, count(*) AS rows, count(*) FILTER (WHERE attempts > 0) AS failing, "
        "extract(epoch FROM now() - min(created_at))::float8 AS lag, "
        "(array_agg(last_error ORDER BY id DESC) FILTER (WHERE last_error IS NOT NULL))[1] AS row_error "
        "FROM runtime.outbox GROUP BY store) "
        "SELECT st.store, coalesce(p.rows, 0) AS rows, coalesce(p.failing, 0) AS failing, "
        "coalesce(p.lag, 0) AS lag, coalesce(st.last_error, p.row_error) AS last_error, st.failures, "
        "extract(epoch FROM now() - st.failing_since)::float8 AS failing_for_s, "
        "extract(epoch FROM st.retry_at - now())::float8 AS retry_in_s, "
        "extract(epoch FROM now() - st.last_error_at)::float8 AS last_error_age_s "
        "FROM runtime.sync_state st LEFT JOIN pending p ON p.store = st.store WHERE st.store = ANY($1::text[]) "
        "ORDER BY st.store",
        list(STORES),
    )
    return [
        Backlog(
            r["store"],
            r["rows"],
            r["failing"],
            round(r["lag"], 3),
            r["last_error"],
            failing_for_s=_seconds(r["failing_for_s"]),
            store_failures=r["failures"],
            retry_in_s=_seconds(max(r["retry_in_s"], 0.0)) if r["retry_in_s"] is not None else None,
            last_error_age_s=_seconds(r["last_error_age_s"]),
        )
        for r in rows
    ]


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
