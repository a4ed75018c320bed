"""The sync dispatcher: applies the outbox to the graph and vector stores, one job per store.

Why one job per store (`sync_stores` with store=graph|vector, job id `sync:{store}`): a store that is down delays
only its own rows; the other keeps converging and ingestion keeps committing. Why it loops until nothing is due: a
writer enqueues it after its commit, and while it runs a second enqueue is dropped (same job id), so the running
one must pick up rows committed meanwhile. A cron sweep every minute is the safety net for an enqueue lost between
a commit and a crash.

Per user, the rows' entities are read from Postgres as they are now (store/sync.py) and applied in one batch, so
replays and reordering are harmless. A failed batch keeps its rows with a backoff (attempts, last_error) and the
dispatcher goes on with the next user; a store that is away makes every batch fail fast, and the rows wait.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from itertools import groupby
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.backoff import equal_jitter
from jobs.resources import EMBEDDER, GRAPH, VECTOR
from jobs.runtime import queue as redis_queue
from jobs.runtime import tracing
from jobs.runtime.context import JobContext
from jobs.runtime.keys import BATCH
from jobs.runtime.registry import JobSpec
from jobs.runtime.retry import describe
from store import outbox
from store.sync import Ref, graph_batch, vector_changes
from store.vector.base import ItemKey, KnowledgeItem, VectorItem

BATCH_ROWS = 500
"""Rows claimed at a time; a user's rows within them are applied as one batch."""
LEASE_S = 120.0
"""How long claimed rows stay hidden from another dispatcher (a crashed one's rows come back after this)."""
RETRY_BASE_S, RETRY_CAP_S = 2.0, 60.0
"""A failing row is retried after 2, 4, 8 … seconds (jittered), at most a minute apart: a store back from an outage
has every waiting row applied within a minute, and probing a store that is still away costs one batch a minute."""
SOON_S = 1.0
"""A dispatcher queued to start within this is as good as a new one for rows just committed."""
RESCHEDULE_ATTEMPTS = 5
"""The dispatcher schedules its own return for rows that failed fewer times than this (about a minute of outage);
after that the sync_sweep cron brings it back each minute, so a long outage never keeps a burst worker busy."""


class SyncArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store: Literal["graph", "vector"] = Field(description="Which derived store to bring up to date.")
    max_rows: int = Field(100_000, ge=1, le=10_000_000, description="Stop after this many rows (the rest waits).")


Outcome = int | Exception
"""Per user: the number of changes applied, or why the user's rows could not be."""


async def apply_graph(ctx: JobContext, refs: Mapping[str, list[Ref]]) -> dict[str, Outcome]:
    """One batch per user, each its own transaction in the store."""
    graph = await ctx.resource(GRAPH)
    outcomes: dict[str, Outcome] = {}
    for user_id, mine in refs.items():
        try:
            batch = await graph_batch(ctx.pool, graph, user_id, mine)
            await graph.apply(user_id, batch)
            outcomes[user_id] = len(batch)
        except Exception as exc:
            outcomes[user_id] = exc
    return outcomes


async def apply_vector(ctx: JobContext, refs: Mapping[str, list[Ref]]) -> dict[str, Outcome]:
    """Every user's items embedded, then written user by user; one user's failure keeps only their rows back."""
    from agents.embeddings import LocalEmbedder
    from agents.llm import CallContext

    vector = await ctx.resource(VECTOR)
    embedder = await ctx.resource(EMBEDDER)
    outcomes: dict[str, Outcome] = {}
    changes: dict[str, tuple[list[KnowledgeItem], list[ItemKey]]] = {}
    for user_id, mine in refs.items():
        try:
            changes[user_id] = await vector_changes(ctx.pool, user_id, mine)
        except Exception as exc:
            outcomes[user_id] = exc
    embedded: dict[str, list[VectorItem]] = {}
    # The local model is fastest in large batches and records no calls: one call for every user. An endpoint's calls
    # are recorded per user (the daily budget is per user), so each user gets their own.
    shared = isinstance(embedder, LocalEmbedder)
    groups = [list(changes)] if shared else [[user_id] for user_id in changes]
    for users in groups:
        texts = [item.embedding_text for user_id in users for item in changes[user_id][0]]
        try:
            context = CallContext(user_id=users[0], agent="sync", job_id=ctx.job_id)
            vectors = iter(await embedder.embed(texts, context=context) if texts else [])
        except Exception as exc:
            outcomes.update(dict.fromkeys(users, exc))
            continue
        for user_id in users:
            embedded[user_id] = [VectorItem(i, next(vectors), embedder.model_version) for i in changes[user_id][0]]
    for user_id, vectors_of_user in embedded.items():
        items, deletes = changes[user_id]
        try:
            if vectors_of_user:
                await vector.upsert(vectors_of_user)
            for key in deletes:
                await vector.delete_entity(user_id, key.source_entity_type, key.source_entity_id)
            outcomes[user_id] = len(items) + len(deletes)
        except Exception as exc:
            outcomes[user_id] = exc
    return outcomes


APPLY = {"graph": apply_graph, "vector": apply_vector}


async def sync_stores(ctx: JobContext, args: SyncArgs) -> Mapping[str, Any]:
    """Apply due outbox rows of one store until none is left (or max_rows); idempotent: every row re-reads its
    entity's current rows, and a row is deleted only once its store has applied it."""
    apply = APPLY[args.store]
    started = time.perf_counter()
    done = failed = changes = 0
    while done + failed < args.max_rows:
        rows = await outbox.claim(ctx.pool, args.store, limit=min(BATCH_ROWS, args.max_rows), lease_s=LEASE_S)
        if not rows:
            break
        by_user = {
            user_id: list(grouped)
            for user_id, grouped in groupby(sorted(rows, key=lambda r: (r.user_id, r.id)), key=lambda r: r.user_id)
        }
        refs = {user: [Ref(r.label, r.entity_id) for r in mine] for user, mine in by_user.items()}
        traced = {"orrery.store": args.store, "orrery.users": len(refs), "orrery.rows": len(rows)}
        with tracing.span("store.apply", traced):
            outcomes = await apply(ctx, refs)
        for user_id, mine in by_user.items():
            ids = [row.id for row in mine]
            outcome = outcomes[user_id]
            if not isinstance(outcome, Exception):
                await outbox.applied(ctx.pool, ids)
                done += len(ids)
                changes += outcome
                continue
            attempts = max(row.attempts for row in mine) + 1
            delay = equal_jitter(RETRY_BASE_S, attempts - 1, RETRY_CAP_S)
            await outbox.failed(ctx.pool, ids, error=describe(outcome), delay_s=delay)
            ctx.log.warning(
                "sync.failed",
                store=args.store,
                user_id=user_id,
                rows=len(ids),
                attempts=attempts,
                retry_in_s=round(delay, 1),
                error_class=type(outcome).__name__,
                error=describe(outcome),
            )
            failed += len(ids)
    waiting = await outbox.next_due(ctx.pool, args.store, below_attempts=RESCHEDULE_ATTEMPTS)
    if waiting is not None:
        # Failed rows in their backoff: come back for them when they fall due. Under the other of the store's two ids
        # (this one is still running, so its own would be refused); if that one is queued or running already, it
        # does this same check when it ends.
        main = f"sync:{args.store}"
        again = f"{main}:retry" if ctx.job_id == main else main
        await ctx.enqueue(SYNC_STORES, {"store": args.store}, job_id=again, run_at=waiting)
    elapsed = round(time.perf_counter() - started, 3)
    if done or failed:
        ctx.log.info("sync.done", store=args.store, rows=done, failed=failed, changes=changes, seconds=elapsed)
    return {"store": args.store, "rows": done, "failed": failed, "changes": changes}


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
    failed row's backoff; with neither, the main id is enqueued."""
    soon_ms = (time.time() + SOON_S) * 1000
    for store in outbox.STORES:
        main = SYNC_STORES.dedupe_key.format(store=store)  # type: ignore[union-attr]
        for job_id in (main, f"{main}:retry"):
            found = await redis_queue.presence(ctx.redis, job_id, SYNC_STORES.queue)
            if found.queued and not found.running and found.due_ms is not None and found.due_ms <= soon_ms:
                break  # about to start: it will claim these rows
            if not found.queued:
                await ctx.enqueue(SYNC_STORES, {"store": store}, job_id=job_id)
                break
