"""`recall`: what Orrery remembers about a user that is relevant to a text, with scores and reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from cli.common import CommandError, backends, console, fail, hint, print_json, require_migrated, run_async, settings
from cli.session import working
from cli.tables import Col, show

if TYPE_CHECKING:
    from store.recall import Recalled


def recall_command(
    text: str = typer.Argument(..., help="What to remember about, in the user's words (a topic, a question)."),
    user: str = typer.Option(..., "--user", "-u", help="The user's id (users.user_id)."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, max=100, help="How many memories to return."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The user's memory units and concepts most relevant to TEXT, ranked as memory is: similarity, recency and
    importance together (weights ORRERY_RECALL_WEIGHT_SIMILARITY / _RECENCY / _IMPORTANCE, 0.5 / 0.3 / 0.2), from
    vector search widened by the graph neighbours; each with its score, the component that carried it and why.

    Reads the derived stores (so a commit shows up once the sync dispatcher applied it; `run.py sync status`) and
    embeds TEXT with the configured embedder (the local model unless ORRERY_EMBEDDINGS_BASE_URL is set; loading it
    takes seconds, shown on a terminal). Exit 2 for a user id Postgres does not hold.

    Examples:

    \b
      run.py recall --user u_123 "how is my running going?"
      run.py recall --user u_123 "Lisbon" --json --limit 5
    """
    if not text.strip() or "\x00" in text:
        fail("recall needs a non-empty TEXT without NUL characters")
    if not user.strip() or "\x00" in user or len(user) > 200:
        fail(f"--user {user[:80]!r}: expected a user id")
    found = run_async(_recall(user, text, limit))
    if as_json:
        print_json([_as_json(item) for item in found])
        return
    if not found:
        hint(f"nothing recalled for user {user} (no memory yet, or not synced: `run.py sync status`)")
        return
    rows = []
    for item in found:
        memory = Text(item.title, style="bold")
        if item.text:
            memory.append(f"\n{item.text[:200]}", style="not bold")
        rows.append((f"{item.score:.3f}", item.label.value, memory, item.carried_by, item.why))
    show(console, [Col("score"), Col("kind"), Col("memory"), Col("carried by"), Col("why")], rows)


def _as_json(item: Recalled) -> dict[str, Any]:
    return {
        "label": item.label.value,
        "entity_id": item.entity_id,
        "title": item.title,
        "text": item.text,
        "score": item.score,
        "carried_by": item.carried_by,
        "components": item.components,
        "why": item.why,
        "at": item.at.isoformat() if item.at else None,
        "importance": item.importance,
    }


async def _recall(user_id: str, text: str, limit: int) -> list[Recalled]:
    from agents.embeddings import open_embedder
    from agents.llm import CallContext
    from store.graph import open_graph_store
    from store.llm_calls import PostgresCallLog
    from store.postgres import create_pool
    from store.recall import Query, recall
    from store.vector import open_vector_store

    cfg = settings()
    found = backends()
    await require_migrated(found.database_url)
    pool = await create_pool(found.database_url, max_size=4)
    try:
        if await pool.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id) is None:
            raise CommandError(f"no user {user_id!r} in the database")
        with working("loading the embedding model and searching"):
            async with (
                open_embedder(cfg, PostgresCallLog(pool)) as embedder,
                open_graph_store(cfg, pool) as graph,
                open_vector_store(cfg, pool, embedder) as vector,
            ):
                [query] = await embedder.embed([text], context=CallContext(user_id=user_id, agent="recall"))
                queries = [Query("the query", query)]
                return await recall(
                    pool, vector, user_id, queries, weights=cfg.recall_weights, graph=graph, limit=limit
                )
    finally:
        await pool.close()
