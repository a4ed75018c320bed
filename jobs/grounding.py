"""Grounding the cycle agents in the user's whole history: recall (store/recall.py: similarity, recency and
importance together) over every memory unit, with the cycle's themes as queries, so an older memory that matters
reaches the model next to the cycle's own material, within the prompt's token budget (the agents' views cut it).

Best effort, as ingestion's relevant concepts are: the vector store lags a commit behind and may be down, and the
cycle must not wait for it (DESIGN.md invariant 1); a failure logs a warning and the agent sees the cycle alone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.context import JobContext
from jobs.runtime.retry import describe
from store.recall import Query, Recalled, recall

THEMES = 5
"""Queries per grounding: the cycle's leading themes (its most mentioned concepts, else its top memories)."""


async def recall_history(
    ctx: JobContext,
    user_id: str,
    themes: Sequence[tuple[str, str]],
    *,
    agent: str,
    limit: int,
    exclude: Collection[str] = (),
) -> list[Recalled]:
    """Up to `limit` of the user's memory units recalled for `themes` ((name, text to embed) each, at most THEMES
    used), best first, none of `exclude`; [] when there is no theme or the stores cannot answer (logged)."""
    from agents.llm import CallContext

    chosen = list(themes)[:THEMES]
    if not chosen:
        return []
    try:
        embedder = await ctx.resource(EMBEDDER)
        vector = await ctx.resource(VECTOR)
        context = CallContext(user_id=user_id, agent=agent, job_id=ctx.job_id)
        vectors = await embedder.embed([text for _, text in chosen], context=context)
        queries = [Query(f"'{name}'", embedded) for (name, _), embedded in zip(chosen, vectors, strict=True)]
        return await recall(
            ctx.pool,
            vector,
            user_id,
            queries,
            weights=ctx.settings.recall_weights,
            labels=(NodeLabel.MEMORY_UNIT,),
            limit=limit,
            exclude=exclude,
        )
    except Exception as exc:
        ctx.log.warning(f"{agent}.history_unavailable", error_class=type(exc).__name__, error=describe(exc))
        return []


def recalled_for(item: Recalled) -> str:
    """The short reason an agent is shown: where the memory came from and what carried it ("similar to 'Running'
    (0.62), carried by importance")."""
    return f"{item.why.split(';', 1)[0]}, carried by {item.carried_by}"
