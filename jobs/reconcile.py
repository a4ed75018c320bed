"""The nightly `reconcile` job: compare Postgres with the graph and vector stores for every user and repair drift.

Why a cron job next to the outbox: the outbox carries every change the code knows it made; reconcile catches what
no outbox row announced (a store restored from an old backup, an edit by hand, an adapter bug, rows lost to an
operator's mistake). It repairs as `run.py reconcile --repair` does, by recording outbox rows for the drifted
entities and starting the dispatchers, so a repair is applied with the same retries and backoff as any change.
A store that is down does not stop the other's reconcile; the job then fails with the store's error and is
retried (recording the healthy store's rows again is harmless: a row only names an entity). A run over every user
also looks for orphans, what a store holds of users Postgres no longer has, and with repair deletes them
(store/reconcile.py says how they arise).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.resources import GRAPH, VECTOR
from jobs.runtime import metrics
from jobs.runtime.context import JobContext
from jobs.runtime.keys import BATCH
from jobs.runtime.registry import JobSpec
from jobs.sync import follow_commit
from store import reconcile as drift
from store.reconcile import StoreDrift


class ReconcileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(None, min_length=1, max_length=200, description="Only this user (default: all).")
    repair: bool = Field(True, description="Record outbox rows for what drifted (false: only report it).")


async def _store_drift(ctx: JobContext, store: str, user_id: str) -> StoreDrift:
    if store == drift.GRAPH:
        return await drift.graph_drift(ctx.pool, await ctx.resource(GRAPH), user_id)
    vector = await ctx.resource(VECTOR)
    return await drift.vector_drift(ctx.pool, vector, user_id, vector.model_version)


async def _orphans(ctx: JobContext, store: str, repair: bool) -> int:
    """How many users `store` holds that Postgres does not have; with `repair` their items are deleted."""
    if store == drift.GRAPH:
        graph = await ctx.resource(GRAPH)
        holder: drift.HoldsUsers = graph
    else:
        vector = await ctx.resource(VECTOR)
        holder = vector
    found = await drift.find_orphans(ctx.pool, holder)
    if found.refusal is not None:
        ctx.log.error("reconcile.orphans_refused", store=store, users=len(found.user_ids), reason=found.refusal)
    elif found.user_ids:
        removed = await drift.remove_orphans(ctx.pool, holder, found) if repair else 0
        ctx.log.warning(
            "reconcile.orphans", store=store, users=len(found.user_ids), example=found.user_ids[0], removed=removed
        )
    return len(found.user_ids)


async def reconcile(ctx: JobContext, args: ReconcileArgs) -> Mapping[str, Any]:
    """Report each user's drift per store (logged as `reconcile.drift`) and, with `repair`, record outbox rows for
    it and start the dispatchers. Idempotent: it reads, and a repeated repair only records rows naming entities."""
    started = time.perf_counter()
    users = [args.user_id] if args.user_id else await drift.user_ids(ctx.pool)
    totals = {store: {"missing": 0, "extra": 0, "changed": 0, "pending": 0} for store in (drift.GRAPH, drift.VECTOR)}
    drifted: set[str] = set()
    recorded = 0
    errors: dict[str, Exception] = {}
    orphans: dict[str, int] = {}
    for store in totals if args.user_id is None else ():
        try:
            orphans[store] = await _orphans(ctx, store, args.repair)
        except Exception as exc:  # a store that is away: the other one is still reconciled
            errors[store] = exc
            ctx.log.warning("reconcile.store_failed", store=store, error=str(exc)[:300])
    for user_id in users:
        for store in totals:
            if store in errors:
                continue
            try:
                found = await _store_drift(ctx, store, user_id)
            except Exception as exc:  # a store that is away: the other one is still reconciled
                errors[store] = exc
                ctx.log.warning("reconcile.store_failed", store=store, user_id=user_id, error=str(exc)[:300])
                continue
            for name, count in found.totals().items():
                totals[store][name] += count
            metrics.reconcile_drift(store, found.totals())
            if found.total:
                drifted.add(user_id)
                ctx.log.warning("reconcile.drift", store=store, user_id=user_id, **found.totals())
                if args.repair:
                    recorded += await drift.record_refs(ctx.pool, user_id, store, found.repair)
    if recorded:
        await follow_commit(ctx)
    elapsed = round(time.perf_counter() - started, 3)
    ctx.log.info("reconcile.done", users=len(users), drifted=len(drifted), recorded=recorded, seconds=elapsed)
    if errors:
        raise next(iter(errors.values()))
    return {
        "users": len(users),
        "drifted_users": len(drifted),
        "outbox_rows": recorded,
        "orphan_users": orphans,
        **totals,
    }


RECONCILE = JobSpec(
    name="reconcile",
    args_model=ReconcileArgs,
    handler=reconcile,
    queue=BATCH,
    timeout_s=3600,
    max_tries=3,
    backoff_s=600,
    dedupe_key="reconcile",
    cron="23 3 * * *",
    resources=(GRAPH, VECTOR),
    description=(
        "Compare Postgres with the graph and vector stores (ids and content hashes) and repair drift through the "
        "outbox; remove what the stores hold of users Postgres no longer has.\nNightly; `run.py reconcile` does the "
        "same by hand and reports per user and type."
    ),
)
