"""`reconcile`: Postgres against the graph and vector stores, per user and type; with --repair, through the outbox.

The comparison and the repair rounds are gathered in a ReconcileRun; the text and JSON reports are built from it
in one place each (report_json, print_report), so a new figure is one field and one line in each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from cli.common import EXIT_NOT_RIGHT, CommandError, console, hint, print_json
from cli.session import (
    STORE_NAMES,
    Applied,
    Session,
    checked_user,
    dispatch,
    open_session,
    progress_bar,
    run_store_command,
)
from cli.tables import Col, show

if TYPE_CHECKING:
    from store.reconcile import Orphans, StoreDrift

REPAIR_ROUNDS = 3
"""A repair that deletes a node the graph should hold as a placeholder needs a second round to put the placeholder
back with its relationship; three rounds settle every case, and a fourth would only repeat a failing store."""
EXAMPLES = 5


@dataclass
class ReconcileRun:
    before: list[StoreDrift] = field(default_factory=list)
    after: list[StoreDrift] | None = None
    applied: dict[str, Applied] = field(default_factory=dict)
    users: int = 0
    unknown_user: bool = False
    """--user named a user Postgres does not hold, of whom the stores still hold something (all of it extra)."""
    orphans: dict[str, Orphans] = field(default_factory=dict)
    """Per store: users it holds that Postgres does not have (only checked without --user)."""
    orphans_removed: dict[str, int] = field(default_factory=dict)
    orphans_left: dict[str, Orphans] = field(default_factory=dict)

    @property
    def final(self) -> list[StoreDrift]:
        return self.after if self.after is not None else self.before

    @property
    def left(self) -> int:
        """Drift and orphans still there after this run (its repair included)."""
        orphans = {**self.orphans, **self.orphans_left}
        return sum(found.total for found in self.final) + sum(len(found.user_ids) for found in orphans.values())


async def _drift(session: Session, store: str, user_id: str) -> StoreDrift:
    from store import reconcile

    if store == reconcile.GRAPH:
        return await reconcile.graph_drift(session.pool, await session.graph(), user_id)
    vector = await session.vector()
    return await reconcile.vector_drift(session.pool, vector, user_id, vector.model_version)


async def _orphans(session: Session, run: ReconcileRun, repair: bool) -> None:
    """Users a store holds and Postgres does not have (store/reconcile.py), removed with `repair`."""
    from store import reconcile

    for store in STORE_NAMES:
        holder: reconcile.HoldsUsers = await session.graph() if store == reconcile.GRAPH else await session.vector()
        run.orphans[store] = found = await reconcile.find_orphans(session.pool, holder)
        if repair and found.user_ids and found.refusal is None:
            run.orphans_removed[store] = await reconcile.remove_orphans(session.pool, holder, found)
            run.orphans_left[store] = await reconcile.find_orphans(session.pool, holder)


async def _reconcile(user: str | None, repair: bool) -> ReconcileRun:
    from store import reconcile

    run = ReconcileRun()
    async with open_session() as session:
        users = [user] if user else await reconcile.user_ids(session.pool)
        run.users = len(users)
        run.unknown_user = user is not None and not await reconcile.user_exists(session.pool, user)
        if user is None:
            await _orphans(session, run, repair)
        with progress_bar("comparing", len(users) * len(STORE_NAMES)) as bar:
            for user_id in users:
                for store in STORE_NAMES:
                    run.before.append(await _drift(session, store, user_id))
                    bar.advance(1)
        if run.unknown_user and not any(found.total or found.pending for found in run.before):
            raise CommandError(f"no user {user!r}: Postgres has no such user and the stores hold nothing of theirs")
        drifted = [found for found in run.before if found.total]
        if not repair or not drifted:
            return run
        for _ in range(REPAIR_ROUNDS):
            for found in drifted:
                await reconcile.record_refs(session.pool, found.user_id, found.store, found.repair)
            for store in sorted({found.store for found in drifted}):
                run.applied.setdefault(store, Applied()).add(await dispatch(session, store))
            run.after = [await _drift(session, found.store, found.user_id) for found in drifted]
            drifted = [found for found in run.after if found.total]
            if not drifted or any(applied.failed for applied in run.applied.values()):
                break
    return run


def _drift_rows(drifts: Sequence[StoreDrift]) -> list[tuple[str, ...]]:
    rows = []
    for found in drifts:
        for kind in found.kinds:
            if kind.drift or kind.pending:
                d = kind.drift
                counts = (kind.expected, kind.held, len(d.missing), len(d.extra), len(d.changed), kind.pending)
                rows.append((found.user_id, found.store, kind.kind, *map(str, counts)))
    return rows


def _show_drift(drifts: Sequence[StoreDrift]) -> None:
    columns = [Col("user", key=True), Col("store"), Col("kind", key=True)]
    columns += [Col(h, justify="right") for h in ("expected", "held", "missing", "extra", "changed", "pending")]
    show(console, columns, _drift_rows(drifts))


def _drift_json(drifts: Sequence[StoreDrift], everyone: bool) -> list[dict[str, Any]]:
    return [
        {
            "user_id": found.user_id,
            "store": found.store,
            **found.totals(),
            "kinds": [kind.as_json(EXAMPLES) for kind in found.kinds if kind.drift or kind.pending],
        }
        for found in drifts
        if everyone or found.total or found.pending
    ]


def _totals_line(label: str, drifts: Sequence[StoreDrift]) -> str:
    parts = []
    for store in STORE_NAMES:
        mine = [found for found in drifts if found.store == store]
        sums = {name: sum(found.totals()[name] for found in mine) for name in ("missing", "extra", "changed")}
        users = len({found.user_id for found in mine if found.total})
        pending = sum(found.pending for found in mine)
        parts.append(
            f"{store}: {users} users drifted, {sums['missing']} missing, {sums['extra']} extra, "
            f"{sums['changed']} changed ({pending} more pending in the outbox)"
        )
    return f"{label}: " + "; ".join(parts)


def _orphans_line(run: ReconcileRun) -> str:
    parts = []
    for store, found in run.orphans.items():
        ids = found.user_ids
        part = f"{store} {len(ids)}" + (f" (e.g. {ids[0]})" if ids else "")
        if store in run.orphans_removed:
            part += f", {run.orphans_removed[store]} nodes/items removed, {len(run.orphans_left[store].user_ids)} left"
        elif ids and found.refusal is not None:
            part += f", {found.refusal}"
        parts.append(part)
    return "orphans (users a store holds that Postgres does not have): " + "; ".join(parts)


def _orphans_json(run: ReconcileRun) -> dict[str, Any]:
    return {
        store: {
            "users": len(found.user_ids),
            "examples": list(found.user_ids[:EXAMPLES]),
            "removed": run.orphans_removed.get(store),
            "left": len(run.orphans_left.get(store, found).user_ids),
            "refused": found.refusal if found.user_ids else None,
        }
        for store, found in run.orphans.items()
    }


def report_json(run: ReconcileRun, one_user: bool) -> dict[str, Any]:
    return {
        "users_checked": run.users,
        "unknown_user": run.unknown_user,
        "drift": _drift_json(run.before, everyone=one_user),
        "repaired": run.after is not None,
        "applied": {store: asdict(applied) for store, applied in run.applied.items()},
        "after": _drift_json(run.after, everyone=one_user) if run.after is not None else None,
        "drift_left": run.left,
        "orphans": _orphans_json(run) if run.orphans else None,
    }


def print_report(run: ReconcileRun, user: str | None) -> None:
    if run.unknown_user:
        console.print(f"user {user} has no row in Postgres: whatever the stores hold for them is extra")
    console.print(_totals_line(f"{run.users} users compared", run.before), highlight=False, soft_wrap=True)
    if run.orphans:
        console.print(_orphans_line(run), highlight=False, soft_wrap=True)
    if any(found.total or found.pending for found in run.before):
        _show_drift(run.before)
    for store, applied in run.applied.items():
        console.print(applied.line(store), highlight=False, soft_wrap=True)
    if run.after is not None:
        console.print(_totals_line("after repair", run.after), highlight=False, soft_wrap=True)
        if run.left:
            _show_drift(run.after)
    elif run.left:
        hint("run `run.py reconcile --repair` to fix it through the outbox")


def reconcile_command(
    user: str | None = typer.Option(None, "--user", help="Only this user id (default: every user in Postgres)."),
    repair: bool = typer.Option(False, "--repair", help="Fix the drift through the outbox, then check again."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, with example ids of each drift."),
) -> None:
    """Compare Postgres with the graph and vector stores by id and content hash, per user and type.

    Missing: Postgres has it, the store does not. Extra: the store holds what Postgres does not (deleted, or another
    model's leftovers). Changed: both have it, with different content (or, for vectors, another embedding model).
    Pending: differences an outbox row is still carrying (the dispatcher's lag, not drift). With --repair, outbox
    rows are recorded for the drifted entities, the dispatcher runs here, and the stores are compared again.
    Without --user it also finds orphans, what a store holds of users Postgres no longer has; --repair deletes them
    (unless most of the store's users are unknown to Postgres: then a wrong store URL is likelier).
    Exit 0 when there is no drift (or it was repaired), 1 when drift or orphans are found or left, 2 on bad input
    or a --user that names nobody (not in Postgres, nothing in the stores).

    Examples:

    \b
      run.py reconcile
      run.py reconcile --user u_123 --json
      run.py reconcile --repair
    """
    user = checked_user(user)
    run = run_store_command(_reconcile(user, repair))
    if as_json:
        print_json(report_json(run, one_user=user is not None))
    else:
        print_report(run, user)
    if run.left:
        raise typer.Exit(EXIT_NOT_RIGHT)
