"""The projection: the user's 3D cosmos (memory units, concepts, artifacts, communities and their edges), laid out
from the vectors the vector store already holds, never embedded again. Two triggers run the same work (`project`):

- **the cycle chain's last step** (jobs/cycle.py: identity `projection:{user_id}:{cycle}`, the chain's dead policy,
  revived by the hourly cycle dispatcher twice at most), or `run.py trigger projection --arg user_id=…` by hand;
- **the refresh**, user-keyed (`projection_refresh:{user_id}`): the vector dispatcher requests one for every user
  whose vectors it changed (`request_refresh`), enqueued ORRERY_PROJECTION_REFRESH_DELAY_S later, so the syncs of a
  burst of ingestions make one refresh. The request is kept in runtime.projection_refresh: a request that arrives
  while the refresh runs sends it round again once it is done, and the hourly cycle dispatcher enqueues requests still
  pending (an enqueue lost with Redis, a refresh that died) while they have died fewer than REFRESH_DEATHS times.

A node whose vector the store does not hold yet is left out and waits: the sync that stores it requests the next
refresh. Layout: agents/projection.py (PCA to 3D, aligned to the previous projection so unchanged nodes stay put).

Idempotent because (DESIGN.md invariant 2): the projection's id derives from the user's cycle and a digest of its
input (store/projection_source.py), checked before the layout and inserted ON CONFLICT DO NOTHING, and an input equal
to the newest projection's writes nothing (checked again at the write, under a per-user lock, since the chain's step
and a refresh may lay out the same input at once under two cycles' ids); a rerun over unchanged rows writes nothing,
one after new material (or after the store caught up) adds the newer projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.cycle import Cycle
from core.errors import DeferredError
from jobs.cycle import CycleArgs, StepResult, chain_step
from jobs.resources import VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.runtime.retry import describe
from store import projection_refresh
from store.cycles import CycleState, read_cycle
from store.projection_source import node_size, projection_id, read_projection_source
from store.repos._base import serialized, utc_now
from store.repos.graph_projections import graph_projection_exists, insert_graph_projection, latest_graph_projection

REFRESH_DEATHS = 3
"""A pending refresh whose job died this many times (since its last success or new request) is not enqueued again."""
PENDING_QUIET = timedelta(minutes=10)
"""The hourly sweep enqueues requests pending for longer than this (a younger one is in its debounce)."""


async def project(ctx: JobContext, user_id: str, cycle: Cycle) -> dict[str, Any]:
    """Read the nodes → their stored vectors → lay out in 3D → write once. The summary for the ledger."""
    from agents.projection import Node, previous_coordinates, projection_data

    source = await read_projection_source(ctx.pool, user_id, max_memory_units=ctx.settings.projection_max_memory_units)
    vector = await ctx.resource(VECTOR)
    stored = await vector.stored_vectors(user_id, [item.key for item in source.items])
    placed = [item for item in source.items if item.key in stored]
    counts = {"nodes": len(placed), "waiting": len(source.items) - len(placed), "skipped": source.skipped}
    if source.items and not placed:
        return {"outcome": "waiting_for_vectors", **counts}
    digest = source.digest(stored)
    new_id = projection_id(cycle, digest)
    previous = await latest_graph_projection(ctx.pool, user_id)
    if previous is not None and previous.projection_data.get("input_digest") == digest:
        return {"projection_id": previous.projection_id, "outcome": "unchanged", **counts}
    if await graph_projection_exists(ctx.pool, user_id, new_id):
        return {"projection_id": new_id, "outcome": "already_written", **counts}

    nodes = [
        Node(
            id=item.source_entity_id,
            type=item.source_entity_type.value,
            label=item.title,
            vector=stored[item.key].vector,
            size=node_size(item),
        )
        for item in placed
    ]
    edges = [{"source": e.source, "target": e.target, "type": e.type, "strength": e.strength} for e in source.edges]
    data = projection_data(
        nodes, source.communities, edges, previous_coordinates(previous.projection_data if previous else None)
    )
    data.update(
        {
            "cycle_start": cycle.start.isoformat(),
            "embedding_model": vector.model_version,
            "aligned_to": previous.projection_id if previous and data["aligned_nodes"] else None,
            "input_digest": digest,
            "waiting_nodes": counts["waiting"],
        }
    )
    async with serialized(ctx.pool, f"projection:{user_id}") as conn:
        newest = await latest_graph_projection(conn, user_id)
        if newest is not None and newest.projection_data.get("input_digest") == digest:
            return {"projection_id": newest.projection_id, "outcome": "unchanged", **counts}
        written = await insert_graph_projection(conn, user_id, new_id, data)
    return {
        "projection_id": new_id,
        "outcome": "written" if written else "already_written",
        **counts,
        "edges": len(data["edges"]),
    }


async def run_projection(ctx: JobContext, args: CycleArgs, cycle: Cycle, state: CycleState) -> StepResult:
    """The chain's last step: the cycle's projection."""
    return StepResult(await project(ctx, args.user_id, cycle))


PROJECTION = chain_step(
    "projection",
    run_projection,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    resources=(VECTOR,),
    description=(
        "Lay out a user's memory units, concepts, artifacts and communities in 3D (PCA of their stored embeddings,"
        " aligned to the previous projection) with their edges: a user_graph_projections row.\n"
        "The chain's last step, projection:{user_id}:{cycle}; `--arg user_id=…` projects now. A dead one is enqueued"
        " again by cycle_dispatch, twice at most."
    ),
)


# --- the refresh: after new entities, debounced per user ------------------------------------------------------------


class RefreshArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200, description="users.user_id")


async def request_refresh(ctx: JobContext, user_id: str) -> None:
    """The user's vectors changed: record the request, and enqueue their refresh ORRERY_PROJECTION_REFRESH_DELAY_S
    from now unless one is queued already (it will see these vectors) or running (it goes round again when done).
    Best effort: a failure is logged, and the hourly sweep or the next change asks again."""
    now = datetime.now(UTC)
    try:
        await projection_refresh.request(ctx.pool, [user_id], at=now)
        run_at = now + timedelta(seconds=ctx.settings.projection_refresh_delay_s)
        await ctx.enqueue(PROJECTION_REFRESH, {"user_id": user_id}, run_at=run_at)
    except Exception as exc:
        ctx.log.warning("projection.refresh_not_requested", user_id=user_id, error=describe(exc))


async def refresh_projection(ctx: JobContext, args: RefreshArgs) -> Mapping[str, Any]:
    """Project the user's current cycle now; settle the request, and go again when a newer one came meanwhile."""
    ctx.bind(user_id=args.user_id)
    state = await read_cycle(ctx.pool, args.user_id) if "\x00" not in args.user_id else None
    if state is None:
        return {"outcome": "no_user"}  # forgotten since the request: nothing to lay out, nothing to retry
    started = utc_now()
    summary = await project(ctx, args.user_id, state.cycle)
    if await projection_refresh.refreshed(ctx.pool, args.user_id, started=started):
        delay = ctx.settings.projection_refresh_delay_s
        raise DeferredError(
            f"projection of user {args.user_id} refreshed ({summary['outcome']}), but more of their memory was stored"
            f" while it ran; refreshing again in {delay:g} s",
            until=datetime.now(UTC) + timedelta(seconds=delay),
        )
    return summary


async def refresh_died(ctx: JobContext, args: RefreshArgs, reason: str) -> None:
    """A dead refresh counts a death on the request; the hourly sweep tries again below REFRESH_DEATHS."""
    if "\x00" not in args.user_id:
        await projection_refresh.died(ctx.pool, args.user_id, reason)


async def revive_refreshes(ctx: JobContext, now: datetime, *, limit: int) -> int:
    """Enqueue the refresh of every user whose request is still pending after PENDING_QUIET (its enqueue was lost, or
    its refresh died fewer than REFRESH_DEATHS times); a no-op for one queued or running. Returns how many."""
    users = await projection_refresh.pending(
        ctx.pool, requested_before=now - PENDING_QUIET, below_deaths=REFRESH_DEATHS, limit=limit
    )
    enqueued = 0
    for user_id in users:
        result = await ctx.enqueue(PROJECTION_REFRESH, {"user_id": user_id})
        enqueued += result.enqueued
    return enqueued


PROJECTION_REFRESH = JobSpec(
    name="projection_refresh",
    args_model=RefreshArgs,
    handler=refresh_projection,
    queue=BATCH,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    dedupe_key="projection_refresh:{user_id}",
    cron=None,
    on_dead=refresh_died,
    resources=(VECTOR,),
    description=(
        "Refresh a user's 3D projection from the vectors already stored (the projection's work, for the current"
        " cycle), after new entities.\n"
        "Requested by the vector dispatcher and enqueued ORRERY_PROJECTION_REFRESH_DELAY_S later (a burst makes one);"
        " the hourly cycle_dispatch enqueues a pending one again (a dead one below 3 deaths)."
    ),
)
