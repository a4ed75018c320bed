"""`sync`, `reconcile`, `rebuild`, `reembed` and `forget-user`: operating the graph and vector stores derived from
Postgres.

Every repair goes through the outbox: a command records rows naming entities and runs the dispatcher in this
process (the `sync_stores` job's own code, with its batches, retries and backoff), so what it writes is exactly
what a worker would. Store modules are imported inside the commands, so `run.py --help` stays light.

Exit codes: 0 done (or healthy, or no drift), 1 the thing checked is not right (a store lags, drift found or left,
rows failed, something of a forgotten user left), 2 bad input or an unreachable backend, as one `error:` line.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import CommandError, backends, console, err_console, fail, run_async, settings
from settings import Settings

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import asyncpg
    import redis.asyncio as aioredis

    from jobs.runtime.context import JobContext
    from jobs.runtime.registry import JobSpec
    from jobs.runtime.resources import WorkerResources
    from store.forget import Footprint
    from store.graph.base import GraphStore
    from store.outbox import Backlog
    from store.reconcile import StoreDrift
    from store.sync import Ref
    from store.vector.base import VectorStore

T = TypeVar("T")

EXIT_NOT_RIGHT = 1
"""A store lags, drift was found or is left, rows failed, or something of a forgotten user is still held."""

STORE_NAMES = ("graph", "vector")
REPAIR_ROUNDS = 3
"""A repair that deletes a node the graph should hold as a placeholder needs a second round to put the placeholder
back with its relationship; three rounds settle every case, and a fourth would only repeat a failing store."""
EXAMPLES = 5

sync_app = typer.Typer(
    help="The outbox that carries Postgres changes to the graph and vector stores.", no_args_is_help=True
)


# --- running store work from the command line -------------------------------------------------------------------


def _checked_user(text: str | None) -> str | None:
    if text is None:
        return None
    if not text.strip() or len(text) > 200 or any(ord(ch) < 32 for ch in text):
        fail(f"user id {text[:60]!r} is not an id: give the user's id as stored in users.user_id (1..200 characters)")
    return text


@dataclass(frozen=True)
class ConfiguredSpace:
    """The configured embedder's vector space, known without loading the model."""

    model_version: str
    dimension: int


def configured_space(cfg: Settings) -> ConfiguredSpace:
    """What `open_embedder` would open, read from the settings: comparing, counting and deleting vectors needs the
    space's name and size, not the model (loading the local one costs seconds)."""
    if cfg.embeddings_base_url is not None:
        return ConfiguredSpace(cfg.embeddings_model, cfg.embeddings_dimension)
    from agents.embeddings import LOCAL_DIMENSION, LOCAL_MODEL

    return ConfiguredSpace(LOCAL_MODEL, LOCAL_DIMENSION)


class Session:
    """Postgres, Redis and the stores for one command, opened as a worker opens them and closed at the end."""

    def __init__(self, cfg: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, stack: AsyncExitStack) -> None:
        from jobs.catalog import JOBS
        from jobs.runtime.resources import WorkerResources

        self.settings = cfg
        self.pool = pool
        self.redis = redis
        self.resources: WorkerResources = WorkerResources(cfg, pool, redis, f"cli:{os.getpid()}", jobs=JOBS)
        self._stack = stack
        self._light_vector: VectorStore | None = None

    async def graph(self) -> GraphStore:
        from jobs.resources import GRAPH

        return await self.resources.get(GRAPH)

    async def vector(self, *, embedding: bool = False) -> VectorStore:
        """The vector store in the configured space, for reading, counting and deleting: no model is loaded (the
        dispatcher loads the embedder only when it has rows to apply). With `embedding`, the dispatcher's own."""
        if embedding:
            from jobs.resources import VECTOR

            return await self.resources.get(VECTOR)
        if self._light_vector is None:
            from store.vector import open_vector_store

            opened = open_vector_store(self.settings, self.pool, configured_space(self.settings))
            self._light_vector = await self._stack.enter_async_context(opened)
        return self._light_vector

    def context(self, spec: JobSpec) -> JobContext:
        """A job context for running `spec`'s handler in this process."""
        import structlog

        from jobs.runtime.context import JobContext

        job_id = f"cli:{spec.name}:{os.getpid()}"
        log = structlog.get_logger("cli").bind(job_id=job_id, job_name=spec.name)
        return JobContext(self.settings, self.pool, self.redis, job_id, spec.name, 1, log, self.resources, spec=spec)


@asynccontextmanager
async def open_session() -> AsyncIterator[Session]:
    from store.postgres import create_pool
    from store.redis import connect_redis

    cfg = settings()
    found = backends()
    async with AsyncExitStack() as stack:
        pool = await create_pool(found.database_url)
        stack.push_async_callback(pool.close)
        redis = await connect_redis(found.redis_url)
        stack.push_async_callback(redis.aclose)
        session = Session(cfg, pool, redis, stack)
        stack.push_async_callback(session.resources.aclose)
        yield session


def run_store_command(coro: Coroutine[Any, Any, T]) -> T:
    """run_async, plus a store or model that cannot be reached or used: one line, exit 2."""
    from core.errors import PermanentError, TransientError

    try:
        return run_async(coro)
    except (TransientError, PermanentError) as exc:
        fail(str(exc))


@dataclass
class ProgressBar:
    """A rich progress bar on stderr when it is a terminal; silent otherwise (scripts read the summary)."""

    progress: Progress
    task: TaskID

    def advance(self, by: int, *, total: int | None = None) -> None:
        self.progress.update(self.task, advance=by, total=total)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[ProgressBar]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
    )
    with progress:
        yield ProgressBar(progress, progress.add_task(description, total=total))


@dataclass
class Applied:
    """What one dispatcher run did: rows applied, rows that failed (they wait with a backoff), store changes."""

    rows: int = 0
    failed: int = 0
    changes: int = 0
    last_error: str | None = None

    def add(self, other: Applied) -> None:
        self.rows += other.rows
        self.failed += other.failed
        self.changes += other.changes
        self.last_error = other.last_error or self.last_error


async def dispatch(session: Session, store: str) -> Applied:
    """Run the `sync_stores` job's handler for `store` in this process until no row is due, with a progress bar."""
    from jobs.sync import BATCH_ROWS, SYNC_STORES, SyncArgs, sync_stores
    from store import outbox

    ctx = session.context(SYNC_STORES)
    total = next(b.rows for b in await outbox.backlog(session.pool) if b.store == store)
    applied = Applied()
    with progress_bar(f"applying the {store} outbox", total) as bar:
        while True:
            result = await sync_stores(ctx, SyncArgs(store=store, max_rows=BATCH_ROWS))
            handled = result["rows"] + result["failed"]
            if not handled:
                break
            applied.rows += result["rows"]
            applied.failed += result["failed"]
            applied.changes += result["changes"]
            bar.advance(handled, total=max(total, applied.rows + applied.failed))
    if applied.failed:
        applied.last_error = next(b.last_error for b in await outbox.backlog(session.pool) if b.store == store)
    return applied


def _applied_line(store: str, applied: Applied) -> str:
    line = f"{store}: {applied.rows} outbox rows applied ({applied.changes} store changes)"
    if applied.failed:
        line += f"; {applied.failed} failed and wait with a backoff: {applied.last_error}"
    return line


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _stores_of(store: str | None) -> tuple[str, ...]:
    if store is None:
        return STORE_NAMES
    if store not in STORE_NAMES:
        fail(f"unknown store {store!r}; stores: {', '.join(STORE_NAMES)}")
    return (store,)


# --- sync status / sync run -------------------------------------------------------------------------------------


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
        return (
            f"{self.last_error_age_s:.0f} s ago: {self.last_error}"
            if self.last_error_age_s is not None
            else self.last_error
        )

    def line(self) -> str:
        text = (
            f"{self.store}: {self.state}, {self.rows} rows pending, {self.failing} failing, "
            f"oldest {self.oldest_lag_s:.1f} s"
        )
        return text + (f"; last error {self.error}" if self.error else "")


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
                checks.append(StoreCheck(f"{name} store", backend, not lag.lagging, lag.line().split(": ", 1)[1]))
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
    dispatcher that is not running), else 0."""
    cfg = settings()
    found = backends()
    stores = run_async(read_lags(found.database_url, cfg.sync_lag_alert_s))
    if as_json:
        rows = [
            {**asdict(lag), "lagging": lag.lagging, "store_failing": lag.failing_for_s is not None} for lag in stores
        ]
        _print_json({"lag_alert_s": cfg.sync_lag_alert_s, "stores": rows})
    else:
        table = Table("store", "status", "pending rows", "failing", "oldest lag", "last error")
        for lag in stores:
            status = f"[green]{lag.state}[/]" if lag.state == "ok" else f"[red]{lag.state}[/]"
            age = f"{lag.oldest_lag_s:.1f} s"
            table.add_row(lag.store, status, str(lag.rows), str(lag.failing), age, lag.error or "-")
        console.print(table)
        console.print(f"lag alert: {cfg.sync_lag_alert_s:g} s (ORRERY_SYNC_LAG_ALERT_S)")
    if any(lag.lagging for lag in stores):
        raise typer.Exit(EXIT_NOT_RIGHT)


@sync_app.command("run")
def sync_run_command(
    store: str | None = typer.Option(None, "--store", help="graph or vector (default: both)."),
) -> None:
    """Run the dispatcher once in this process: apply every pending outbox row, including rows waiting out a
    backoff (handy once a store is back after an outage). Exit 1 when rows still fail (they keep waiting)."""
    chosen = _stores_of(store)

    async def _run() -> dict[str, Applied]:
        from store import outbox

        async with open_session() as session:
            done = {}
            for name in chosen:
                await outbox.retry_now(session.pool, name)
                done[name] = await dispatch(session, name)
            return done

    done = run_store_command(_run())
    for name, applied in done.items():
        console.print(_applied_line(name, applied), highlight=False, soft_wrap=True)
    if any(applied.failed for applied in done.values()):
        raise typer.Exit(EXIT_NOT_RIGHT)


# --- reconcile --------------------------------------------------------------------------------------------------


@dataclass
class ReconcileRun:
    before: list[StoreDrift] = field(default_factory=list)
    after: list[StoreDrift] | None = None
    applied: dict[str, Applied] = field(default_factory=dict)
    users: int = 0
    unknown_user: bool = False


async def _drift(session: Session, store: str, user_id: str) -> StoreDrift:
    from store import reconcile

    if store == reconcile.GRAPH:
        return await reconcile.graph_drift(session.pool, await session.graph(), user_id)
    vector = await session.vector()
    return await reconcile.vector_drift(session.pool, vector, user_id, vector.model_version)


async def _reconcile(user: str | None, repair: bool) -> ReconcileRun:
    from store import reconcile

    run = ReconcileRun()
    async with open_session() as session:
        users = [user] if user else await reconcile.user_ids(session.pool)
        run.users = len(users)
        run.unknown_user = user is not None and not await reconcile.user_exists(session.pool, user)
        with progress_bar("comparing", len(users) * len(STORE_NAMES)) as bar:
            for user_id in users:
                for store in STORE_NAMES:
                    run.before.append(await _drift(session, store, user_id))
                    bar.advance(1)
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


def _drift_rows(drifts: Sequence[StoreDrift]) -> Table:
    table = Table("user", "store", "kind", "expected", "held", "missing", "extra", "changed", "pending")
    for found in drifts:
        for kind in found.kinds:
            if kind.drift or kind.pending:
                d = kind.drift
                counts = (kind.expected, kind.held, len(d.missing), len(d.extra), len(d.changed), kind.pending)
                table.add_row(found.user_id, found.store, kind.kind, *map(str, counts))
    return table


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
    Exit 0 when there is no drift (or it was repaired), 1 when drift is found or left, 2 on bad input."""
    user = _checked_user(user)
    run = run_store_command(_reconcile(user, repair))
    final = run.after if run.after is not None else run.before
    left = sum(found.total for found in final)
    if as_json:
        _print_json(
            {
                "users_checked": run.users,
                "unknown_user": run.unknown_user,
                "drift": _drift_json(run.before, everyone=user is not None),
                "repaired": run.after is not None,
                "applied": {store: asdict(applied) for store, applied in run.applied.items()},
                "after": _drift_json(run.after, everyone=user is not None) if run.after is not None else None,
                "drift_left": left,
            }
        )
    else:
        if run.unknown_user:
            console.print(f"user {user} has no row in Postgres: whatever the stores hold for them is extra")
        console.print(_totals_line(f"{run.users} users compared", run.before), highlight=False, soft_wrap=True)
        if any(found.total or found.pending for found in run.before):
            console.print(_drift_rows(run.before))
        for store, applied in run.applied.items():
            console.print(_applied_line(store, applied), highlight=False, soft_wrap=True)
        if run.after is not None:
            console.print(_totals_line("after repair", run.after), highlight=False, soft_wrap=True)
            if left:
                console.print(_drift_rows(run.after))
        elif left:
            console.print("run `reconcile --repair` to fix it through the outbox")
    if left:
        raise typer.Exit(EXIT_NOT_RIGHT)


# --- rebuild / reembed ------------------------------------------------------------------------------------------


async def _users_for(session: Session, user: str | None) -> list[str]:
    from store import reconcile

    if user is None:
        return await reconcile.user_ids(session.pool)
    if not await reconcile.user_exists(session.pool, user):
        raise CommandError(
            f"no user {user} in Postgres; to clear what the stores still hold for them run `reconcile --user {user} "
            "--repair` or `forget-user`"
        )
    return [user]


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
) -> None:
    """Reconstruct the graph or the vector store from Postgres, for one user or all, with a progress bar.

    Deletes the user's items in that store, records an outbox row for every entity and applies them with the
    dispatcher in this process. The user's items are missing from the store until the dispatcher has applied them.
    Exit 1 when rows failed (they wait in the outbox), 2 on bad input."""
    if graph == vector:
        fail("choose one store: --graph or --vector")
    store: Literal["graph", "vector"] = "graph" if graph else "vector"
    user = _checked_user(user)

    async def _run() -> tuple[int, int, Applied]:
        from store import reconcile

        async with open_session() as session:
            users = await _users_for(session, user)
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
    what = "nodes" if store == "graph" else "items"
    console.print(f"{store}: {users} users cleared ({deleted} {what} deleted), rebuilt from Postgres")
    console.print(_applied_line(store, applied), highlight=False, soft_wrap=True)
    if applied.failed:
        raise typer.Exit(EXIT_NOT_RIGHT)


def reembed_command(
    user: str | None = typer.Option(None, "--user", help="Only this user id (default: every user in Postgres)."),
    every: bool = typer.Option(False, "--all", help="Re-embed every item, not only those of another model."),
) -> None:
    """Re-embed the vector items made with another model than the configured one (after a model change).

    With --all, every item. Goes through the outbox and the dispatcher in this process; items of another model are
    invisible to search until then. Exit 1 when rows failed (they wait in the outbox), 2 on bad input."""
    user = _checked_user(user)

    async def _run() -> tuple[int, int, str, Applied]:
        from store import reconcile

        async with open_session() as session:
            users = await _users_for(session, user)
            vector = await session.vector()

            async def refs_of(user_id: str) -> list[Ref]:
                if every:
                    return await reconcile.store_refs(session.pool, user_id, reconcile.VECTOR)
                return await reconcile.stale_vector_refs(vector, user_id, vector.model_version)

            recorded, applied = await _record_and_dispatch(session, "vector", users, refs_of, "choosing items")
            return len(users), recorded, vector.model_version, applied

    users, recorded, model, applied = run_store_command(_run())
    which = "every item" if every else "items of another model"
    console.print(f"vector: {recorded} items to re-embed with {model} ({which}, {users} users)", highlight=False)
    console.print(_applied_line("vector", applied), highlight=False, soft_wrap=True)
    if applied.failed:
        raise typer.Exit(EXIT_NOT_RIGHT)


# --- forget-user ------------------------------------------------------------------------------------------------

_REMOVE_QUEUED = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[4])
return 1
"""
"""Remove a queued job unless a worker holds its lease (KEYS: queue, job, in-progress, retry; ARGV: job id).
A running job is left to finish: it finds its user gone and ends."""


def _names_any(value: Any, ids: frozenset[str]) -> bool:
    """Whether a job argument holds one of the ids as a text value, at any depth."""
    if isinstance(value, str):
        return value in ids
    if isinstance(value, dict):
        return any(_names_any(item, ids) for item in value.values())
    if isinstance(value, list):
        return any(_names_any(item, ids) for item in value)
    return False


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    queue: str
    running: bool


async def jobs_naming(redis: aioredis.Redis, ids: frozenset[str]) -> list[QueuedJob]:
    """Jobs in any queue whose arguments name one of the ids (read from Redis, so jobs a producer wrote straight
    into Redis, which the ledger has not seen yet, are found too)."""
    from jobs.runtime.keys import QUEUES, in_progress_key, job_key, queue_key

    found: list[QueuedJob] = []
    for queue in QUEUES:
        members = [m.decode() for m in await redis.zrange(queue_key(queue), 0, -1)]
        for start in range(0, len(members), 500):
            chunk = members[start : start + 500]
            records = await redis.mget([job_key(job_id) for job_id in chunk])
            running = await redis.mget([in_progress_key(job_id) for job_id in chunk])
            for job_id, raw, lease in zip(chunk, records, running, strict=True):
                try:
                    args = json.loads(raw).get("k") if raw else None
                except (ValueError, AttributeError):
                    continue
                if _names_any(args, ids):
                    found.append(QueuedJob(job_id, queue, lease is not None))
    return found


async def unrecorded_dead_naming(redis: aioredis.Redis, ids: frozenset[str]) -> list[bytes]:
    """Entries of the dead letters the ledger could not hold (kept in Redis) whose job arguments name an id."""
    from jobs.runtime.keys import UNRECORDED_DEAD_KEY

    entries: list[bytes] = []
    for raw in await redis.lrange(UNRECORDED_DEAD_KEY, 0, -1):  # type: ignore[misc]  # redis-py types it as a union
        try:
            record = json.loads(json.loads(raw).get("record") or "null")
        except (ValueError, AttributeError, TypeError):
            continue
        if isinstance(record, dict) and _names_any(record.get("k"), ids):
            entries.append(raw)
    return entries


async def _outcomes(redis: aioredis.Redis, job_ids: Sequence[str]) -> list[str]:
    from jobs.runtime.keys import outcome_key

    keys = [outcome_key(job_id) for job_id in job_ids]
    return [key for key, there in zip(keys, await redis.mget(keys), strict=True) if there is not None] if keys else []


@dataclass
class Forgetting:
    """What forget-user knows of one user while it works: the ids naming them and where their data is."""

    user_id: str
    conversations: list[str]
    job_ids: list[str]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset([self.user_id, *self.conversations])


async def _footprint(session: Session, who: Forgetting) -> Footprint:
    from store import forget

    jobs = await jobs_naming(session.redis, who.ids)
    return forget.Footprint(
        postgres=await forget.count_postgres(session.pool, who.user_id, who.conversations),
        graph=await forget.count_graph(await session.graph(), who.user_id),
        vector=await forget.count_vector(await session.vector(), who.user_id),
        redis={
            "turn contexts": await forget.count_turn_contexts(session.redis, who.conversations),
            "queued jobs": sum(not job.running for job in jobs),
            "running jobs": sum(job.running for job in jobs),
            "unrecorded dead letters": len(await unrecorded_dead_naming(session.redis, who.ids)),
            "job outcomes": len(await _outcomes(session.redis, who.job_ids)),
        },
    )


async def _forget(user_id: str, really: bool) -> tuple[Footprint, Footprint | None, int]:
    """(before, after or None on a dry run, tombstones dropped); the order is forget_user_command's docstring's."""
    from jobs.runtime.keys import UNRECORDED_DEAD_KEY, in_progress_key, job_key, queue_key, retry_key
    from store import forget

    async with open_session() as session:
        conversations = await forget.conversation_ids(session.pool, user_id)
        job_ids = await forget.job_ids_naming(session.pool, [user_id, *conversations])
        who = Forgetting(user_id, conversations, job_ids)
        before = await _footprint(session, who)
        if not really:
            return before, None, 0
        # 1. Redis, while Postgres still lists their conversations
        await forget.delete_turn_contexts(session.redis, conversations)
        for job in await jobs_naming(session.redis, who.ids):
            keys = (queue_key(job.queue), job_key(job.job_id), in_progress_key(job.job_id), retry_key(job.job_id))
            await session.redis.eval(_REMOVE_QUEUED, 4, *keys, job.job_id)  # type: ignore[misc]
        for raw in await unrecorded_dead_naming(session.redis, who.ids):
            await session.redis.lrem(UNRECORDED_DEAD_KEY, 0, raw)  # type: ignore[misc,arg-type]  # bytes are stored as is
        outcomes = await _outcomes(session.redis, job_ids)
        if outcomes:
            await session.redis.delete(*outcomes)
        # 2. Postgres, with tombstones in the outbox
        await forget.delete_postgres(session.pool, user_id, conversations)
        # 3. the stores
        await (await session.graph()).delete_user(user_id)
        await (await session.vector()).delete_user(user_id)
        after = await _footprint(session, who)
        # 4. the tombstones, once the stores hold nothing of theirs
        dropped = 0
        if not sum(after.graph.values()) and not sum(after.vector.values()):
            dropped = await forget.drop_tombstones(session.pool, user_id)
            after.postgres = await forget.count_postgres(session.pool, user_id, conversations)
        return before, after, dropped


def _footprint_table(before: Footprint, after: Footprint | None) -> Table:
    table = Table("store", "what", "before", *(["after"] if after is not None else []))
    for store, counts in before.stores().items():
        for what, count in counts.items():
            left = after.stores()[store].get(what, 0) if after is not None else None
            if count or left:
                table.add_row(store, what, str(count), *([str(left)] if left is not None else []))
    return table


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
    reported), dead letters and outcomes of those jobs. Order: Redis (its keys are found from the conversation ids
    Postgres still lists), then Postgres in one transaction that also writes an outbox tombstone for each of their
    entities, then the graph and vector stores, then the tombstones. If it stops half-way, Postgres is either intact
    or empty with tombstones pending (`sync status` shows them; the dispatcher deletes those entities from the
    stores); running it again finishes the job. Exit 0 when nothing is left (or on a dry run), 1 when something is
    still held (rerun it once a running job has ended), 2 on bad input."""
    checked = _checked_user(user_id)
    assert checked is not None
    before, after, dropped = run_store_command(_forget(checked, yes))
    left = after.total if after is not None else None
    if as_json:
        _print_json(
            {
                "user_id": checked,
                "deleted": after is not None,
                "before": before.stores(),
                "after": after.stores() if after is not None else None,
                "left": left,
                "tombstones_dropped": dropped,
            }
        )
    else:
        console.print(_footprint_table(before, after))
        if after is None:
            what = f"{before.total} rows, items and keys" if before.total else "nothing"
            console.print(f"dry run: {what} of user {checked} found; add --yes to delete", highlight=False)
        elif left:
            console.print(f"[red]{left} still held[/] (see 'after'); run forget-user again once running jobs end")
        else:
            console.print(f"user {checked} forgotten: nothing left in Postgres, graph, vector store or Redis")
    if left:
        raise typer.Exit(EXIT_NOT_RIGHT)
