"""`sync status` and `sync run`: the outbox that carries Postgres changes to the graph and vector stores; and the
derived stores' rows of `doctor` and `health --stores`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import typer

from cli.common import EXIT_NOT_RIGHT, console, migrated, print_json, run_async, settings
from cli.session import STORE_NAMES, Applied, configured_space, dispatch, open_session, run_store_command, stores_of
from cli.tables import Col, show, styled
from settings import Settings

if TYPE_CHECKING:
    import asyncpg

    from store.graph.base import GraphStore
    from store.outbox import Backlog
    from store.vector.base import VectorStore

sync_app = typer.Typer(
    help="The outbox that carries Postgres changes to the graph and vector stores.", no_args_is_help=True
)


@dataclass(frozen=True)
class Lag:
    """One store's outbox backlog against the alert, and whether the store is failing right now."""

    store: str
    rows: int
    failing: int
    oldest_lag_s: float
    last_error: str | None
    alert_s: float
    failing_for_s: float | None = None
    store_failures: int = 0
    retry_in_s: float | None = None
    last_error_age_s: float | None = None

    @property
    def lagging(self) -> bool:
        return self.oldest_lag_s > self.alert_s

    @property
    def state(self) -> str:
        """FAILING (the dispatcher cannot reach or use the store now), LAGGING (past the alert), or ok."""
        if self.failing_for_s is not None:
            retry = f", next try in {self.retry_in_s:.0f} s" if self.retry_in_s is not None else ""
            return f"FAILING for {self.failing_for_s:.0f} s ({self.store_failures} tries{retry})"
        return f"LAGGING (past {self.alert_s:g} s)" if self.lagging else "ok"

    @property
    def error(self) -> str | None:
        """The last error with its age."""
        if not self.last_error:
            return None
        if self.last_error_age_s is None:
            return self.last_error
        return f"{self.last_error_age_s:.0f} s ago: {self.last_error}"

    def summary(self) -> str:
        text = f"{self.state}, {self.rows} rows pending, {self.failing} failing, oldest {self.oldest_lag_s:.1f} s"
        return text + (f"; last error {self.error}" if self.error else "")

    def line(self) -> str:
        return f"{self.store}: {self.summary()}"


def lags(backlog: Sequence[Backlog], alert_s: float) -> list[Lag]:
    return [
        Lag(
            b.store,
            b.rows,
            b.failing,
            b.oldest_lag_s,
            b.last_error,
            alert_s,
            b.failing_for_s,
            b.store_failures,
            b.retry_in_s,
            b.last_error_age_s,
        )
        for b in backlog
    ]


async def read_lags(database_url: str, alert_s: float) -> list[Lag]:
    """Each store's backlog from runtime.outbox (Postgres only: no store client is opened)."""
    from store import outbox
    from store.postgres import connect

    conn = await connect(database_url)
    try:
        return lags(await outbox.backlog(conn), alert_s)
    finally:
        await conn.close()


@dataclass(frozen=True)
class StoreCheck:
    """A `doctor` row for one derived store."""

    name: str
    target: str
    ok: bool
    detail: str


async def check_derived_stores(cfg: Settings, database_url: str) -> list[StoreCheck]:
    """Open each derived store as a worker would and ask it for a count (so the query path is exercised), and read
    its outbox backlog: unhealthy when it cannot be opened or its oldest pending change is past the lag alert."""
    from store.graph import open_graph_store
    from store.postgres import BackendUnavailable, create_pool
    from store.vector import open_vector_store

    try:
        pool = await create_pool(database_url, max_size=2, timeout=5)
    except BackendUnavailable:
        return [StoreCheck(f"{name} store", "-", False, "needs Postgres (see above)") for name in STORE_NAMES]
    try:
        unreadable = ""
        try:
            backlog = {lag.store: lag for lag in lags(await _backlog(pool), cfg.sync_lag_alert_s)}
        except Exception as exc:
            backlog, unreadable = {}, f"outbox unreadable: {str(exc)[:160]}"
        probes: dict[str, AbstractAsyncContextManager[GraphStore] | AbstractAsyncContextManager[VectorStore]] = {
            "graph": open_graph_store(cfg, pool),
            "vector": open_vector_store(cfg, pool, configured_space(cfg)),
        }
        checks = []
        for name, opened in probes.items():
            try:
                backend = await _probe(opened)
            except Exception as exc:
                checks.append(StoreCheck(f"{name} store", "-", False, f"cannot open it: {str(exc)[:200]}"))
                continue
            lag = backlog.get(name)
            if lag is None:
                checks.append(StoreCheck(f"{name} store", backend, False, unreadable))
            else:
                checks.append(StoreCheck(f"{name} store", backend, not lag.lagging, lag.summary()))
        return checks
    finally:
        await pool.close()


async def _probe(opened: AbstractAsyncContextManager[GraphStore] | AbstractAsyncContextManager[VectorStore]) -> str:
    """Open a store, count a user nobody has (the query path runs), close it; its backend's name."""
    async with opened as store:
        await store.counts("doctor:probe")
        return store.backend


async def _backlog(db: asyncpg.Pool) -> list[Backlog]:
    from store import outbox

    return await outbox.backlog(db)


@sync_app.command("status")
def sync_status_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Outbox backlog per derived store: whether the store is failing right now (as its dispatcher finds it: for how
    long, how many tries, the next one), rows pending, rows failing, the oldest pending change's age, the last error.

    Exit 1 when a store's oldest pending change is older than ORRERY_SYNC_LAG_ALERT_S (a store that is down or a
    dispatcher that is not running), else 0.

    Example: run.py sync status --json"""
    cfg = settings()
    found = migrated()
    stores = run_async(read_lags(found.database_url, cfg.sync_lag_alert_s))
    if as_json:
        rows = [
            {**asdict(lag), "lagging": lag.lagging, "store_failing": lag.failing_for_s is not None} for lag in stores
        ]
        print_json({"lag_alert_s": cfg.sync_lag_alert_s, "stores": rows})
    else:
        columns = [Col("store", key=True), Col("status"), Col("pending rows"), Col("failing"), Col("oldest lag")]
        rows_shown = [
            (
                lag.store,
                styled(f"[green]{lag.state}[/]" if lag.state == "ok" else f"[red]{lag.state}[/]"),
                str(lag.rows),
                str(lag.failing),
                f"{lag.oldest_lag_s:.1f} s",
            )
            for lag in stores
        ]
        show(console, columns, rows_shown)
        for lag in stores:
            if lag.error:
                console.print(f"{lag.store}: last error {lag.error}", highlight=False, soft_wrap=True)
        console.print(f"lag alert: {cfg.sync_lag_alert_s:g} s (ORRERY_SYNC_LAG_ALERT_S)")
    if any(lag.lagging for lag in stores):
        raise typer.Exit(EXIT_NOT_RIGHT)


@sync_app.command("run")
def sync_run_command(
    store: str | None = typer.Option(None, "--store", help="graph or vector (default: both)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Run the dispatcher once in this process: apply every pending outbox row, including rows waiting out a
    backoff (handy once a store is back after an outage). Exit 1 when rows still fail (they keep waiting).

    Example: run.py sync run --store vector"""
    chosen = stores_of(store)

    async def _run() -> dict[str, Applied]:
        from store import outbox

        async with open_session() as session:
            done = {}
            for name in chosen:
                await outbox.retry_now(session.pool, name)
                done[name] = await dispatch(session, name)
            return done

    done = run_store_command(_run())
    if as_json:
        print_json({name: asdict(applied) for name, applied in done.items()})
    else:
        for name, applied in done.items():
            console.print(applied.line(name), highlight=False, soft_wrap=True)
    if any(applied.failed for applied in done.values()):
        raise typer.Exit(EXIT_NOT_RIGHT)
