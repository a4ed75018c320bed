"""`rebuild` and `reembed`: reconstruct a derived store from Postgres, or re-embed vectors of another model, through
the outbox and the dispatcher in this process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

import typer

from cli.common import EXIT_NOT_RIGHT, console, fail, print_json
from cli.session import (
    Applied,
    Session,
    checked_user,
    dispatch,
    open_session,
    progress_bar,
    run_store_command,
    users_for,
)

if TYPE_CHECKING:
    from store.graph.base import GraphStore
    from store.sync import Ref
    from store.vector.base import VectorStore


async def _record_and_dispatch(
    session: Session, store: str, users: Sequence[str], refs_of: Callable[[str], Awaitable[list[Ref]]], description: str
) -> tuple[int, Applied]:
    """For each user, `refs_of(user)` (awaited) entities get an outbox row for `store`; then the dispatcher runs."""
    from store import reconcile

    recorded = 0
    with progress_bar(description, len(users)) as bar:
        for user_id in users:
            refs: list[Ref] = await refs_of(user_id)
            recorded += await reconcile.record_refs(session.pool, user_id, store, refs)
            bar.advance(1)
    return recorded, await dispatch(session, store)


def rebuild_command(
    graph: bool = typer.Option(False, "--graph", help="Rebuild the graph store."),
    vector: bool = typer.Option(False, "--vector", help="Rebuild the vector store (re-embeds every item)."),
    user: str | None = typer.Option(None, "--user", help="Only this user id (default: every user in Postgres)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Reconstruct the graph or the vector store from Postgres, for one user or all, with a progress bar.

    Deletes the user's items in that store, records an outbox row for every entity and applies them with the
    dispatcher in this process. The user's items are missing from the store until the dispatcher has applied them.
    Exit 1 when rows failed (they wait in the outbox), 2 on bad input or an unknown user.

    Examples:

    \b
      run.py rebuild --graph
      run.py rebuild --vector --user u_123 --json
    """
    if graph == vector:
        fail("choose one store: --graph or --vector")
    store: Literal["graph", "vector"] = "graph" if graph else "vector"
    user = checked_user(user)

    async def _run() -> tuple[int, int, Applied]:
        from store import reconcile

        async with open_session() as session:
            users = await users_for(session, user)
            target: GraphStore | VectorStore = await session.graph() if store == "graph" else await session.vector()
            deleted = 0
            with progress_bar(f"clearing the {store} store", len(users)) as bar:
                for user_id in users:
                    deleted += await target.delete_user(user_id)
                    bar.advance(1)

            async def refs_of(user_id: str) -> list[Ref]:
                return await reconcile.store_refs(session.pool, user_id, store)

            _, applied = await _record_and_dispatch(session, store, users, refs_of, "recording")
            return len(users), deleted, applied

    users, deleted, applied = run_store_command(_run())
    if as_json:
        print_json({"store": store, "users": users, "deleted": deleted, "applied": asdict(applied)})
    else:
        what = "nodes" if store == "graph" else "items"
        console.print(f"{store}: {users} users cleared ({deleted} {what} deleted), rebuilt from Postgres")
        console.print(applied.line(store), highlight=False, soft_wrap=True)
    if applied.failed:
        raise typer.Exit(EXIT_NOT_RIGHT)


def reembed_command(
    user: str | None = typer.Option(None, "--user", help="Only this user id (default: every user in Postgres)."),
    every: bool = typer.Option(False, "--all", help="Re-embed every item, not only those of another model."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Re-embed the vector items made with another model than the configured one (after a model change).

    With --all, every item. Goes through the outbox and the dispatcher in this process; items of another model are
    invisible to search until then. Exit 1 when rows failed (they wait in the outbox), 2 on bad input.

    Examples:

    \b
      run.py reembed
      run.py reembed --user u_123 --all
    """
    user = checked_user(user)

    async def _run() -> tuple[int, int, str, Applied]:
        from store import reconcile

        async with open_session() as session:
            users = await users_for(session, user)
            vector = await session.vector()

            async def refs_of(user_id: str) -> list[Ref]:
                if every:
                    return await reconcile.store_refs(session.pool, user_id, reconcile.VECTOR)
                return await reconcile.stale_vector_refs(vector, user_id, vector.model_version)

            recorded, applied = await _record_and_dispatch(session, "vector", users, refs_of, "choosing items")
            return len(users), recorded, vector.model_version, applied

    users, recorded, model, applied = run_store_command(_run())
    if as_json:
        print_json({"users": users, "items": recorded, "model": model, "all": every, "applied": asdict(applied)})
    else:
        which = "every item" if every else "items of another model"
        console.print(f"vector: {recorded} items to re-embed with {model} ({which}, {users} users)", highlight=False)
        console.print(applied.line("vector"), highlight=False, soft_wrap=True)
    if applied.failed:
        raise typer.Exit(EXIT_NOT_RIGHT)
