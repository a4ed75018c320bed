"""`forget-user`: the command that shows jobs/forget_user.py's workflow: a before/after table that must end at zero."""

from __future__ import annotations

import typer

from cli.common import EXIT_NOT_RIGHT, CommandError, console, print_json
from cli.session import checked_user, open_session, run_store_command
from cli.tables import Col, show
from jobs.forget_user import Forgotten


async def _forget(user_id: str, really: bool) -> Forgotten:
    from jobs.forget_user import forget_user

    async with open_session() as session:
        graph, vector = await session.graph(), await session.vector()
        done = await forget_user(session.pool, session.redis, graph, vector, user_id, really=really)
    if not done.known:
        raise CommandError(f"no user {user_id!r}: Postgres has no such user and nothing anywhere names them")
    return done


def forget_user_command(
    user_id: str = typer.Argument(..., help="The user's id (users.user_id)."),
    yes: bool = typer.Option(False, "--yes", help="Delete; without it, only count what would be deleted."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Delete a user everywhere and prove it: count what Postgres, the graph store, the vector store and Redis hold
    of them, delete it (with --yes; a dry run by default), count again: zero everywhere.

    Postgres: every row with their user_id in `public` and `runtime` (conversations, messages, memory, the LLM call
    ledger, the embedded graph and vectors), job ledger rows whose arguments name them or their conversations.
    Redis: turn contexts of their conversations, queued jobs naming them (a running one is left to finish and is
    reported), dead letters and outcomes of those jobs. If it stops half-way, Postgres is either intact or empty
    with tombstones pending (`sync status` shows them); running it again finishes the job. Exit 0 when nothing is
    left (or on a dry run), 1 when something is still held (rerun it once a running job has ended), 2 on bad input
    or an id that names nobody.

    Examples:

    \b
      run.py forget-user u_123
      run.py forget-user u_123 --yes --json
    """
    checked = checked_user(user_id)
    assert checked is not None
    done = run_store_command(_forget(checked, yes))
    before, after = done.before, done.after
    left = after.total if after is not None else None
    if as_json:
        print_json(
            {
                "user_id": checked,
                "deleted": after is not None,
                "before": before.stores(),
                "after": after.stores() if after is not None else None,
                "left": left,
                "tombstones_dropped": done.tombstones_dropped,
            }
        )
    else:
        columns = [Col("store", key=True), Col("what", key=True), Col("before", justify="right")]
        columns += [Col("after", justify="right")] if after is not None else []
        rows = []
        for store, counts in before.stores().items():
            for what, count in counts.items():
                remaining = after.stores()[store].get(what, 0) if after is not None else None
                if count or remaining:
                    rows.append((store, what, str(count), *([str(remaining)] if remaining is not None else [])))
        show(console, columns, rows)
        if after is None:
            what = f"{before.total} rows, items and keys" if before.total else "nothing"
            console.print(f"dry run: {what} of user {checked} found; add --yes to delete", highlight=False)
        elif left:
            console.print(f"[red]{left} still held[/] (see 'after'); run forget-user again once running jobs end")
        else:
            console.print(f"user {checked} forgotten: nothing left in Postgres, graph, vector store or Redis")
    if left:
        raise typer.Exit(EXIT_NOT_RIGHT)
