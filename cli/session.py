"""Running store work from the command line: Postgres, Redis and the derived stores opened as a worker opens them,
the dispatcher run in this process, progress on stderr.

Every repair goes through the outbox: a command records rows naming entities and runs the dispatcher here (the
`sync_stores` job's own code, with its batches, retries and backoff), so what it writes is exactly what a worker
would. Store modules are imported inside the functions, so `run.py --help` stays light.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cli.common import CommandError, backends, err_console, fail, require_migrated, run_async, settings
from settings import Settings

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import asyncpg
    import redis.asyncio as aioredis

    from jobs.runtime.context import JobContext
    from jobs.runtime.registry import JobSpec
    from jobs.runtime.resources import WorkerResources
    from store.graph.base import GraphStore
    from store.vector.base import VectorStore

T = TypeVar("T")

STORE_NAMES = ("graph", "vector")


def checked_user(text: str | None) -> str | None:
    """A --user value: an id as users.user_id holds one, else one line and exit 2."""
    if text is None:
        return None
    if not text.strip() or len(text) > 200 or any(ord(ch) < 32 for ch in text):
        fail(f"user id {text[:60]!r} is not an id: give the user's id as stored in users.user_id (1..200 characters)")
    return text


def stores_of(store: str | None) -> tuple[str, ...]:
    if store is None:
        return STORE_NAMES
    if store not in STORE_NAMES:
        fail(f"unknown store {store!r}; stores: {', '.join(STORE_NAMES)}")
    return (store,)


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
        dispatcher loads the embedder only when it has rows to apply). With `embedding`, the dispatcher's own, the
        model loaded (with a note on stderr: the local one takes seconds)."""
        if embedding:
            from jobs.resources import VECTOR

            with working("loading the embedding model"):
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
    await require_migrated(found.database_url)
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


@contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs with nothing to count (loading a model), when it is a
    terminal; scripts see nothing."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(f"{what}…"):
        yield


@dataclass
class ProgressBar:
    """A rich progress bar on stderr when it is a terminal; silent otherwise (scripts read the summary)."""

    progress: Progress
    task: TaskID

    def advance(self, by: int, *, total: int | None = None) -> None:
        self.progress.update(self.task, advance=by, total=total)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[ProgressBar]:
    """Log lines written meanwhile go above the bar (the log writer resolves stderr at each line, which rich
    redirects while the bar is live)."""
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

    def line(self, store: str) -> str:
        text = f"{store}: {self.rows} outbox rows applied ({self.changes} store changes)"
        if self.failed:
            text += f"; {self.failed} failed and wait with a backoff: {self.last_error}"
        return text


async def dispatch(session: Session, store: str) -> Applied:
    """Run the `sync_stores` job's handler for `store` in this process until no row is due, with a progress bar."""
    from jobs.sync import BATCH_ROWS, SYNC_STORES, SyncArgs, sync_stores
    from store import outbox

    ctx = session.context(SYNC_STORES)
    total = next(b.rows for b in await outbox.backlog(session.pool) if b.store == store)
    applied = Applied()
    if total and store == "vector":
        await session.vector(embedding=True)  # the model loads before the bar starts, not at 0/N
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


async def users_for(session: Session, user: str | None) -> list[str]:
    """Every user in Postgres, or the one asked for; an unknown one is one line (exit 2)."""
    from store import reconcile

    if user is None:
        return await reconcile.user_ids(session.pool)
    if not await reconcile.user_exists(session.pool, user):
        raise CommandError(
            f"no user {user} in Postgres; to clear what the stores still hold for them run `run.py reconcile --user "
            f"{user} --repair` or `run.py forget-user {user} --yes`"
        )
    return [user]
