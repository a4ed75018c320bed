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
from jobs.runtime.context import JobContext
from jobs.runtime.keys import BATCH
from jobs.runtime.registry import JobSpec
from jobs.runtime.retry import describe
from store import outbox
from store.sync import Ref, graph_batch, vector_changes
from store.vector.base import VectorItem

BATCH_ROWS = 500
"""Rows claimed at a time; a user's rows within them are applied as one batch."""
LEASE_S = 120.0
"""How long claimed rows stay hidden from another dispatcher (a crashed one's rows come back after this)."""
RETRY_BASE_S, RETRY_CAP_S = 2.0, 60.0
"""A failing row is retried after 2, 4, 8 … seconds (jittered), at most a minute apart: a store back from an outage
has every waiting row applied within a minute, and probing a store that is still away costs one batch a minute."""
RESCHEDULE_ATTEMPTS = 5
"""The dispatcher schedules its own return for rows that failed fewer times than this (about a minute of outage);
after that the sync_sweep cron brings it back each minute, so a long outage never keeps a burst worker busy."""


class SyncArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store: Literal["graph", "vector"] = Field(description="Which derived store to bring up to date.")
    max_rows: int = Field(100_000, ge=1, le=10_000_000, description="Stop after this many rows (the rest waits).")


async def apply_graph(ctx: JobContext, user_id: str, refs: list[Ref]) -> int:
    graph = await ctx.resource(GRAPH)
    batch = await graph_batch(ctx.pool, graph, user_id, refs)
    await graph.apply(user_id, batch)
    return len(batch)


async def apply_vector(ctx: JobContext, user_id: str, refs: list[Ref]) -> int:
    from agents.llm import CallContext

    vector = await ctx.resource(VECTOR)
    embedder = await ctx.resource(EMBEDDER)
    items, deletes = await vector_changes(ctx.pool, user_id, refs)
    if items:
        context = CallContext(user_id=user_id, agent="sync", job_id=ctx.job_id)
        vectors = await embedder.embed([item.embedding_text for item in items], context=context)
        await vector.upsert(
            [VectorItem(item, vector, embedder.model_version) for item, vector in zip(items, vectors, strict=True)]
        )
    for key in deletes:
        await vector.delete_entity(user_id, key.source_entity_type, key.source_entity_id)
    return len(items) + len(deletes)


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
        for user_id, grouped in groupby(sorted(rows, key=lambda r: (r.user_id, r.id)), key=lambda r: r.user_id):
            mine = list(grouped)
            ids = [row.id for row in mine]
            try:
                changes += await apply(ctx, user_id, [Ref(row.label, row.entity_id) for row in mine])
            except Exception as exc:
                attempts = max(row.attempts for row in mine) + 1
                delay = equal_jitter(RETRY_BASE_S, attempts - 1, RETRY_CAP_S)
                await outbox.failed(ctx.pool, ids, error=describe(exc), delay_s=delay)
                ctx.log.warning(
                    "sync.failed",
                    store=args.store,
                    user_id=user_id,
                    rows=len(ids),
                    attempts=attempts,
                    retry_in_s=round(delay, 1),
                    error_class=type(exc).__name__,
                    error=describe(exc),
                )
                failed += len(ids)
                continue
            await outbox.applied(ctx.pool, ids)
            done += len(ids)
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
    """Call after a commit that recorded outbox rows: start (or leave running) both stores' dispatchers."""
    for store in outbox.STORES:
        await ctx.enqueue(SYNC_STORES, {"store": store})
