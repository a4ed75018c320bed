"""The projection job: the user's 3D cosmos (memory units, concepts, artifacts, communities and their edges) after a
cycle, or whenever it is triggered by hand (`run.py trigger projection --arg user_id=…`).

Vectors: those the embedded vector store already holds for the nodes' current content are reused; the rest are
embedded through the EMBEDDER resource (the same texts the vector store embeds, store/vector/texts.py). Layout:
agents/projection.py (PCA to 3D, aligned to the previous projection so unchanged nodes stay put).

Idempotent because (DESIGN.md invariant 2): the projection's id derives from the user, the cycle and a digest of
its input (store/projection_writes.py), checked before any embedding and inserted ON CONFLICT DO NOTHING; a rerun
over unchanged rows writes nothing, a rerun after new material adds the newer projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import PermanentError
from jobs.cycle_report import CycleArgs
from jobs.resources import EMBEDDER
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from store.cycle_report_writes import cycle_key, read_cycle_user
from store.projection_writes import (
    projection_exists,
    projection_id,
    read_projection_source,
    stored_vectors,
    write_projection,
)
from store.repos.graph_projections import latest_graph_projection


async def run_projection(ctx: JobContext, args: CycleArgs) -> Mapping[str, Any]:
    """Read the nodes → reuse or embed their vectors → lay out in 3D → write once."""
    from agents.llm import CallContext
    from agents.projection import Node, previous_coordinates, projection_data

    ctx.bind(user_id=args.user_id)
    user = await read_cycle_user(ctx.pool, args.user_id)
    if user is None:
        raise PermanentError(f"user {args.user_id} does not exist; nothing to project")
    cycle_start = args.cycle_start or user.cycle_start
    source = await read_projection_source(
        ctx.pool, args.user_id, max_memory_units=ctx.settings.projection_max_memory_units
    )
    new_id = projection_id(args.user_id, cycle_start, source.digest())
    summary: dict[str, Any] = {"cycle": cycle_key(cycle_start), "projection_id": new_id}
    if await projection_exists(ctx.pool, args.user_id, new_id):
        return {**summary, "outcome": "already_written", "embedded": 0}

    embedder = await ctx.resource(EMBEDDER)
    vectors = await stored_vectors(ctx.pool, args.user_id, embedder.model_version, source.items)
    missing = [item for item in source.items if item.key not in vectors]
    if missing:
        context = CallContext(user_id=args.user_id, agent="projection", job_id=ctx.job_id)
        embedded = await embedder.embed([item.embedding_text for item in missing], context=context)
        vectors.update({item.key: vector for item, vector in zip(missing, embedded, strict=True)})
    nodes = [
        Node(
            id=item.source_entity_id,
            type=item.source_entity_type.value,
            label=item.title,
            vector=vectors[item.key],
            size=item.importance_score,
        )
        for item in source.items
    ]
    previous = await latest_graph_projection(ctx.pool, args.user_id)
    edges = [{"source": e.source, "target": e.target, "type": e.type, "strength": e.strength} for e in source.edges]
    data = projection_data(
        nodes, source.communities, edges, previous_coordinates(previous.projection_data if previous else None)
    )
    data.update(
        {
            "cycle_start": cycle_start.isoformat(),
            "embedding_model": embedder.model_version,
            "aligned_to": previous.projection_id if previous and data["aligned_nodes"] else None,
        }
    )
    written = await write_projection(ctx.pool, args.user_id, new_id, data)
    return {
        **summary,
        "outcome": "written" if written else "already_written",
        "nodes": len(data["nodes"]),
        "edges": len(data["edges"]),
        "embedded": len(missing),
        "reused_vectors": len(source.items) - len(missing),
        "skipped": source.skipped,
    }


PROJECTION = JobSpec(
    name="projection",
    args_model=CycleArgs,
    handler=run_projection,
    queue=BATCH,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    dedupe_key=None,
    cron=None,
    resources=(EMBEDDER,),
    description=(
        "Lay out a user's memory units, concepts, artifacts and communities in 3D (PCA of their embeddings, aligned"
        " to the previous projection) with their edges: a user_graph_projections row.\n"
        "Enqueued by cycle_report with job id projection:{user_id}:{cycle_key}; `--arg user_id=…` projects now."
    ),
)
