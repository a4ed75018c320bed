"""The sync dispatcher: applies the outbox to the graph and vector stores, one job per store.

Why one job per store (`sync_stores` with store=graph|vector, job id `sync:{store}`): a store that is down delays
only its own rows; the other keeps converging and ingestion keeps committing. Why it loops until nothing is due: a
writer enqueues it after its commit, and while it runs a second enqueue is dropped (same job id), so the running
one must pick up rows committed meanwhile. A cron sweep every minute is the safety net for an enqueue lost between
a commit and a crash.

Per user, the rows' entities are read from Postgres as they are now (store/sync.py) and applied in one batch, so
replays and reordering are harmless; each user's outcome is recorded as soon as it is known. Two kinds of failure:
- one user's (their data is refused, say): their rows wait with their own backoff (2, 4, 8 … s, at most a minute)
  and the dispatcher goes on with the next user;
- the store's own (away, timing out, its embedder down: `store_trouble`): the dispatcher stops trying it, records
  it in runtime.sync_state at once (`sync status` and the metrics show it while it lasts), and holds every row of
  the store until its next try, which it schedules itself: 0.5, 1, 2, 4, then every 5 s. A store that answers again
  is so noticed within seconds, not waited out, and a store that stays away costs one failed call per try. After
  PROBE_WINDOW_S of failures it leaves the tries to the sync_sweep cron (once a minute), so a long outage never
  keeps a burst worker busy.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Literal, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from core.backoff import equal_jitter
from core.errors import TransientError
from jobs.projection import request_refresh
from jobs.resources import EMBEDDER, GRAPH, VECTOR
from jobs.runtime import queue as redis_queue
from jobs.runtime import tracing
from jobs.runtime.context import JobContext
from jobs.runtime.keys import BATCH
from jobs.runtime.registry import JobSpec
from jobs.runtime.retry import describe
from store import concept_names, outbox
from store.concept_names import ConceptName
from store.outbox import OutboxRow, StoreState
from store.sync import Ref, VectorWork, graph_batch, vector_changes, vector_work
from store.vector.base import SourceEntityType, VectorItem

BATCH_ROWS = 500
"""Rows claimed at a time; a user's rows within them are applied as one batch."""
LEASE_S = 120.0
"""How long claimed rows stay hidden from another dispatcher (a crashed one's rows come back after this)."""
RETRY_BASE_S, RETRY_CAP_S = 2.0, 60.0
"""A user's rows that failed (and not the store) are retried after 2, 4, 8 … seconds (jittered), at most a minute
apart."""
PROBE_BASE_S, PROBE_CAP_S = 0.5, 5.0
"""After a failure of the store itself it is tried again after 0.5, 1, 2, 4 s, then every 5 s: a store back from an
outage has its rows applied within seconds."""
PROBE_WINDOW_S = 300.0
"""How long into an outage the dispatcher schedules its own tries; after that the sync_sweep cron brings it back
each minute (`run.py sync run` at once)."""
SOON_S = 1.0
"""A dispatcher queued to start within this is as good as a new one for rows just committed."""
RESCHEDULE_ATTEMPTS = 5
"""The dispatcher schedules its own return for a user's failed rows while they failed fewer times than this (about
a minute); after that the sync_sweep cron brings it back each minute."""

_STORE_DOWN: tuple[type[BaseException], ...] = (
    TransientError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
)


def store_trouble(exc: BaseException) -> bool:
    """A failure of the store itself (unreachable, timing out, its embeddings endpoint down: every user would fail
    alike), as opposed to one user's batch being refused."""
    return isinstance(exc, _STORE_DOWN)


class SyncArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store: Literal["graph", "vector"] = Field(description="Which derived store to bring up to date.")
    max_rows: int = Field(100_000, ge=1, le=10_000_000, description="Stop after this many rows (the rest waits).")


T = TypeVar("T")

Outcome = int | Exception
"""For some users: the number of changes applied, or why their rows could not be."""
Outcomes = AsyncGenerator[tuple[list[str], Outcome], None]
"""What an apply function yields as it goes: users and their outcome, each as soon as it is known."""


USERS_AT_ONCE = 4
"""Users whose batches a dispatcher works on at once. One at a time, a claim of many users' rows was a long chain of
round trips, each waiting behind every ingestion running on the worker's event loop: under bench_sync's burst the
last user of a claim waited for all the others (graph lag p95 1.2 s; with four at once the round trips overlap).
Four keeps its pool connections (a read and a store write each) within the worker's pool beside its jobs."""


async def each_user(
    users: Iterable[str], work: Callable[[str], Awaitable[T]], *, at_once: int = USERS_AT_ONCE
) -> AsyncGenerator[tuple[str, T | Exception], None]:
    """`work` for every user, `at_once` at a time, each user's result (or exception) yielded as soon as it is known.
    Closing the iterator early (the store failed) cancels what has not finished: their rows stay claimed and come
    back, and every batch is idempotent."""
    gate = asyncio.Semaphore(at_once)

    async def run(user_id: str) -> tuple[str, T | Exception]:
        async with gate:
            try:
                return user_id, await work(user_id)
            except Exception as exc:
                return user_id, exc

    tasks = [asyncio.create_task(run(user_id)) for user_id in users]
    try:
        for finished in asyncio.as_completed(tasks):
            yield await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def apply_graph(ctx: JobContext, refs: Mapping[str, list[Ref]]) -> Outcomes:
    """One batch per user, each its own transaction in the store, USERS_AT_ONCE users at a time."""
    graph = await ctx.resource(GRAPH)

    async def one(user_id: str) -> int:
        batch = await graph_batch(ctx.pool, graph, user_id, refs[user_id])
        await graph.apply(user_id, batch)
        return len(batch)

    async with aclosing(each_user(refs, one)) as outcomes:
        async for user_id, outcome in outcomes:
            yield [user_id], outcome


async def apply_vector(ctx: JobContext, refs: Mapping[str, list[Ref]]) -> Outcomes:
    """Every user's items (and their concepts' names, store/concept_names.py) written user by user, embedding only
    texts the stores do not hold a vector of: an item whose text is unchanged (a concept whose salience moved) keeps
    its stored vector. Users whose vectors changed get their 3D projection refreshed (debounced: jobs/projection.py).
    The reads and the writes go USERS_AT_ONCE users at a time; the embedding between them is one call."""
    vector = await ctx.resource(VECTOR)
    embedder = await ctx.resource(EMBEDDER)
    model = embedder.model_version

    async def read(user_id: str) -> VectorWork:
        changes = await vector_changes(ctx.pool, user_id, refs[user_id])
        stored = await vector.stored_vectors(user_id, [item.key for item in changes.upserts])
        held_names = await concept_names.stored_texts(
            ctx.pool, user_id, model, [name.concept_id for name in changes.names]
        )
        return vector_work(changes, stored, held_names)

    work: dict[str, VectorWork] = {}
    async with aclosing(each_user(refs, read)) as reads:
        async for user_id, found in reads:
            if isinstance(found, Exception):
                yield [user_id], found
            else:
                work[user_id] = found

    async def write(
        user_id: str,
        *,
        fresh: Mapping[str, list[VectorItem]],
        named: Mapping[str, list[tuple[ConceptName, list[float]]]],
    ) -> int:
        todo = work[user_id]
        gone = [k.source_entity_id for k in todo.deletes if k.source_entity_type is SourceEntityType.CONCEPT]
        written = fresh[user_id] + [VectorItem(item, held, model) for item, held in todo.reuse]
        if written:
            await vector.upsert(written)
        for key in todo.deletes:
            await vector.delete_entity(user_id, key.source_entity_type, key.source_entity_id)
        await concept_names.upsert(ctx.pool, user_id, model, named[user_id])
        await concept_names.delete(ctx.pool, user_id, gone)
        if todo.writes:
            await request_refresh(ctx, user_id)
        return todo.writes

    # The local model is fastest in large batches and records no calls: one call for every user. An endpoint's calls
    # are recorded per user (the daily budget is per user), so each user gets their own.
    groups = [[user_id] for user_id in work] if embedder.records_calls else [list(work)]
    for users in groups:
        texts = [item.embedding_text for user_id in users for item in work[user_id].embed]
        texts += [name.text for user_id in users for name in work[user_id].names]
        try:
            vectors = iter(await embedder.embed(texts, context=_context(users[0], ctx)) if texts else [])
        except Exception as exc:
            yield users, exc
            continue
        items = {u: [VectorItem(i, next(vectors), model) for i in work[u].embed] for u in users}
        names = {u: [(name, next(vectors)) for name in work[u].names] for u in users}

        async with aclosing(each_user(users, functools.partial(write, fresh=items, named=names))) as writes:
            async for user_id, outcome in writes:
                yield [user_id], outcome


def _context(user_id: str, ctx: JobContext) -> Any:
    from agents.llm import CallContext

    return CallContext(user_id=user_id, agent="sync", job_id=ctx.job_id)


APPLY = {"graph": apply_graph, "vector": apply_vector}


@dataclass
class Progress:
    """What one dispatcher run did, and the store's state if it found the store failing."""

    done: int = 0
    failed: int = 0
    changes: int = 0
    failing: StoreState | None = None


async def _apply_claimed(ctx: JobContext, store: str, rows: list[OutboxRow], progress: Progress) -> None:
    """Apply one claim's rows user by user, recording each user's outcome as it comes; on a failure of the store
    itself, hold the rest (and every row due before the store's next try) and stop."""
    by_user = {
        user_id: list(grouped)
        for user_id, grouped in groupby(sorted(rows, key=lambda r: (r.user_id, r.id)), key=lambda r: r.user_id)
    }
    refs = {user: [Ref(r.label, r.entity_id) for r in mine] for user, mine in by_user.items()}
    settled: set[int] = set()
    answered = False
    traced: dict[str, str | int] = {"orrery.store": store, "orrery.users": len(refs), "orrery.rows": len(rows)}
    with tracing.span("store.apply", traced):
        async with aclosing(APPLY[store](ctx, refs)) as outcomes:
            async for users, outcome in outcomes:
                mine = [row for user_id in users for row in by_user[user_id]]
                ids = [row.id for row in mine]
                settled.update(ids)
                if not isinstance(outcome, Exception):
                    await outbox.applied(ctx.pool, ids)
                    if not answered:
                        await outbox.store_answered(ctx.pool, store)
                        answered = True
                    progress.done += len(ids)
                    progress.changes += outcome
                    continue
                error = describe(outcome)
                attempts = max(row.attempts for row in mine) + 1
                if store_trouble(outcome):
                    await outbox.failed(ctx.pool, ids, error=error, delay_s=0)
                    unsettled = [row.id for row in rows if row.id not in settled]
                    progress.failing = await outbox.store_failed(
                        ctx.pool,
                        store,
                        error=error,
                        claimed=unsettled,
                        retry_base_s=PROBE_BASE_S,
                        retry_cap_s=PROBE_CAP_S,
                    )
                    progress.failed += len(ids) + len(unsettled)
                    ctx.log.warning(
                        "sync.store_failing",
                        store=store,
                        failures=progress.failing.failures,
                        retry_at=progress.failing.retry_at,
                        rows_held=len(ids) + len(unsettled),
                        error_class=type(outcome).__name__,
                        error=error,
                    )
                    return
                delay = equal_jitter(RETRY_BASE_S, attempts - 1, RETRY_CAP_S)
                await outbox.failed(ctx.pool, ids, error=error, delay_s=delay)
                await outbox.note_error(ctx.pool, store, error)
                ctx.log.warning(
                    "sync.failed",
                    store=store,
                    users=users,
                    rows=len(ids),
                    attempts=attempts,
                    retry_in_s=round(delay, 1),
                    error_class=type(outcome).__name__,
                    error=error,
                )
                progress.failed += len(ids)


async def sync_stores(ctx: JobContext, args: SyncArgs) -> Mapping[str, Any]:
    """Apply due outbox rows of one store until none is left (or max_rows); idempotent: every row re-reads its
    entity's current rows, and a row is deleted only once its store has applied it."""
    started = time.perf_counter()
    progress = Progress()
    state = await outbox.store_state(ctx.pool, args.store)
    if state.failing and state.retry_at is not None and state.retry_at > datetime.now(UTC):
        # Known to be away until its next try: what was committed since waits for that try, untried.
        await outbox.hold(ctx.pool, args.store, until=state.retry_at)
        progress.failing = state
    while progress.failing is None and progress.done + progress.failed < args.max_rows:
        limit = min(BATCH_ROWS, args.max_rows - progress.done - progress.failed)
        rows = await outbox.claim(ctx.pool, args.store, limit=limit, lease_s=LEASE_S)
        if not rows:
            break
        if state.failing:
            ctx.log.info("sync.store_trying", store=args.store, failing_since=state.failing_since)
        await _apply_claimed(ctx, args.store, rows, progress)
        if state.failing and progress.failing is None and progress.done:
            away_s = (datetime.now(UTC) - state.failing_since).total_seconds() if state.failing_since else None
            ctx.log.info("sync.store_back", store=args.store, away_s=round(away_s or 0, 1))
            state = await outbox.store_state(ctx.pool, args.store)
    await _come_back(ctx, args.store, progress.failing)
    elapsed = round(time.perf_counter() - started, 3)
    if progress.done or progress.failed:
        ctx.log.info(
            "sync.done",
            store=args.store,
            rows=progress.done,
            failed=progress.failed,
            changes=progress.changes,
            seconds=elapsed,
        )
    return {"store": args.store, "rows": progress.done, "failed": progress.failed, "changes": progress.changes}


async def _come_back(ctx: JobContext, store: str, failing: StoreState | None) -> None:
    """Schedule this dispatcher's own return: for the store's next try while it fails (within PROBE_WINDOW_S of
    the outage's start), else for a user's rows in their backoff. Under the other of the store's two ids (this one
    is still running, so its own would be refused); if that one is queued or running already, it does this same
    check when it ends."""
    if failing is not None:
        within = failing.failing_since is not None and (
            (datetime.now(UTC) - failing.failing_since).total_seconds() < PROBE_WINDOW_S
        )
        waiting = failing.retry_at if within else None
    else:
        waiting = await outbox.next_due(ctx.pool, store, below_attempts=RESCHEDULE_ATTEMPTS)
    if waiting is not None:
        main = f"sync:{store}"
        again = f"{main}:retry" if ctx.job_id == main else main
        await ctx.enqueue(SYNC_STORES, {"store": store}, job_id=again, run_at=waiting)


SYNC_STORES = JobSpec(
    name="sync_stores",
    args_model=SyncArgs,
    handler=sync_stores,
    queue=BATCH,
    timeout_s=600,
    max_tries=3,
    backoff_s=5,
    dedupe_key="sync:{store}",
    cron=None,
    resources=(GRAPH, VECTOR, EMBEDDER),
    description=(
        "Apply the outbox to one derived store (graph or vector): make it match Postgres for every changed entity.\n"
        "Enqueued after each commit that changes memory and by the sync_sweep cron; a failing row waits with backoff."
    ),
)


class SweepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def sync_sweep(ctx: JobContext, args: SweepArgs) -> Mapping[str, Any]:
    """Enqueue the dispatcher of every store with due rows (the safety net for an enqueue lost in a crash)."""
    enqueued = []
    for backlog in await outbox.backlog(ctx.pool):
        if backlog.rows:
            result = await ctx.enqueue(SYNC_STORES, {"store": backlog.store})
            enqueued.append({"store": backlog.store, "rows": backlog.rows, "enqueued": result.enqueued})
    return {"stores": enqueued}


SYNC_SWEEP = JobSpec(
    name="sync_sweep",
    args_model=SweepArgs,
    handler=sync_sweep,
    queue=BATCH,
    timeout_s=30,
    max_tries=1,
    backoff_s=0,
    dedupe_key="sync_sweep",
    cron="* * * * *",
    description="Enqueue sync_stores for every store with outbox rows still due.",
)


async def follow_commit(ctx: JobContext) -> None:
    """Call after a commit that recorded outbox rows: make sure each store has a dispatcher that will still claim them.

    A dispatcher queued but not yet running will (it claims every due row when it starts): nothing to do, one Redis
    round trip. One already running may have made its last claim before this commit, so a follow-up is enqueued
    under the store's other id (its own would be refused while it runs), as it is when the queued one waits for a
    failed row's backoff; with neither, the main id is enqueued. Every store's ids are read in one Redis round trip
    (this runs after every ingestion)."""
    soon_ms = (time.time() + SOON_S) * 1000
    ids = {store: SYNC_STORES.dedupe_key.format(store=store) for store in outbox.STORES}  # type: ignore[union-attr]
    candidates = [job_id for main in ids.values() for job_id in (main, f"{main}:retry")]
    seen = dict(zip(candidates, await redis_queue.presences(ctx.redis, candidates, SYNC_STORES.queue), strict=True))
    for store, main in ids.items():
        for job_id in (main, f"{main}:retry"):
            found = seen[job_id]
            if found.queued and not found.running and found.due_ms is not None and found.due_ms <= soon_ms:
                break  # about to start: it will claim these rows
            if not found.queued:
                await ctx.enqueue(SYNC_STORES, {"store": store}, job_id=job_id)
                break
