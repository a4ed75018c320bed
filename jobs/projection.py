"""The projection job: the user's 3D cosmos (memory units, concepts, artifacts, communities and their edges) after a
cycle, the last step of the cycle chain (jobs/cycle.py), or whenever it is triggered by hand (`run.py trigger
projection --arg user_id=…`). A projection that dies (an embedder or store outage) is enqueued again by the hourly
cycle dispatcher, twice at most.

Vectors: those the embedded vector store already holds for the nodes' current content are reused; the rest are
embedded through the EMBEDDER resource (the same texts the vector store embeds, store/vector/texts.py). Layout:
agents/projection.py (PCA to 3D, aligned to the previous projection so unchanged nodes stay put).

Idempotent because (DESIGN.md invariant 2): the projection's id derives from the user, the cycle and a digest of
its input (store/projection_source.py), checked before any embedding and inserted ON CONFLICT DO NOTHING; a rerun
over unchanged rows writes nothing, a rerun after new material adds the newer projection.
"""

from __future__ import annotations

from core.cycle import Cycle
from jobs.cycle import CycleArgs, StepResult, chain_step
from jobs.resources import EMBEDDER
from jobs.runtime.context import JobContext
from store.cycles import CycleState
from store.projection_source import projection_id, read_projection_source, stored_vectors
from store.repos.graph_projections import graph_projection_exists, insert_graph_projection, latest_graph_projection


async def run_projection(ctx: JobContext, args: CycleArgs, cycle: Cycle, state: CycleState) -> StepResult:
    """Read the nodes → reuse or embed their vectors → lay out in 3D → write once."""
    from agents.llm import CallContext
    from agents.projection import Node, previous_coordinates, projection_data

    source = await read_projection_source(
        ctx.pool, args.user_id, max_memory_units=ctx.settings.projection_max_memory_units
    )
    new_id = projection_id(cycle, source.digest())
    if await graph_projection_exists(ctx.pool, args.user_id, new_id):
        return StepResult({"projection_id": new_id, "outcome": "already_written", "embedded": 0})

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
            "cycle_start": cycle.start.isoformat(),
            "embedding_model": embedder.model_version,
            "aligned_to": previous.projection_id if previous and data["aligned_nodes"] else None,
        }
    )
    written = await insert_graph_projection(ctx.pool, args.user_id, new_id, data)
    return StepResult(
        {
            "projection_id": new_id,
            "outcome": "written" if written else "already_written",
            "nodes": len(data["nodes"]),
            "edges": len(data["edges"]),
            "embedded": len(missing),
            "reused_vectors": len(source.items) - len(missing),
            "skipped": source.skipped,
        }
    )


PROJECTION = chain_step(
    "projection",
    run_projection,
    timeout_s=600,
    max_tries=3,
    backoff_s=30,
    resources=(EMBEDDER,),
    description=(
        "Lay out a user's memory units, concepts, artifacts and communities in 3D (PCA of their embeddings, aligned"
        " to the previous projection) with their edges: a user_graph_projections row.\n"
        "The chain's last step, projection:{user_id}:{cycle}; `--arg user_id=…` projects now. A dead one is enqueued"
        " again by cycle_dispatch, twice at most."
    ),
)
