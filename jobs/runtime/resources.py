"""What every job in one worker process shares: settings, the Postgres pools, Redis, and the resources jobs declare.

Why declarable resources: an LLM client, an embedding model, a graph or vector store client are expensive to open
and must be shared by every job of a process, yet a maintenance job needs none of them and a liveness probe must
not import them. So each is a `Resource` (a name and an opener) that a job lists in `JobSpec.resources`; the worker
opens one the first time a job asks for it, keeps it for the process's life and closes it at shutdown. Adding a
store is a new Resource next to the jobs that use it (jobs/resources.py), not an edit of the worker.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from settings import Settings

if TYPE_CHECKING:
    from jobs.runtime.registry import JobTable

R = TypeVar("R")


def make_worker_id() -> str:
    """host:pid, recorded in the ledger so an operator can tell which process ran (or abandoned) a run."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ledger_dsn(dsn: str) -> str:
    """The DSN of the ledger's own connections: commits that do not wait for the WAL flush.

    Why: a ledger row is operational history, not the system of record, and waiting for two fsyncs per job was the
    runtime's largest cost (bench/bench_dispatch.py). A Postgres crash can lose the last fraction of a second of
    ledger updates, never a handler's writes (they use the normal pool); a run left looking active is marked
    LostJob by the next enqueue of its id. The LLM call records (runtime.llm_calls) use these connections too, for
    the same reason: a crash of Postgres itself may lose the last fraction of a second of them, which the daily
    budget then undercounts by those calls. asyncpg passes unknown DSN query parameters on as server settings.
    """
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "synchronous_commit"] + [("synchronous_commit", "off")]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True, eq=False)
class Resource(Generic[R]):
    """A process-wide dependency: `open(resources)` is an async context manager yielding the thing, entered on first
    use and exited when the worker stops.

    A resource is known by its name, which must be unique: `worker --processes N` hands each child the job table
    pickled, and the copies a child unpickles must be the same resource as the module-level one its jobs ask for."""

    name: str
    open: Callable[[WorkerResources], AbstractAsyncContextManager[R]]
    description: str = ""
    problem: Callable[[Settings], str | None] | None = None
    """Why the settings cannot open it (one line), else None: asked when a worker starts, so a worker serving jobs
    that need it refuses to start instead of failing every such job later."""
    warm: Callable[[Settings], bool] | None = None
    """When it returns True for the worker's settings, a worker serving a job that declares this resource opens it
    before it takes any work (what is slow to open, like a model to load), instead of making that job wait."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Resource", self.name))


class WorkerResources:
    """Opened once per process: the pools and Redis by the worker, every declared Resource lazily by its first user."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        worker_id: str,
        *,
        jobs: JobTable | None = None,
        ledger_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.ledger_pool = ledger_pool or pool
        self.redis = redis
        self.worker_id = worker_id
        self.jobs = jobs
        self._stack = AsyncExitStack()
        self._opened: dict[Resource[Any], Any] = {}
        self._locks: dict[Resource[Any], asyncio.Lock] = {}
        self._warming: asyncio.Task[None] | None = None
        self._to_warm: tuple[Resource[Any], ...] = ()

    async def get(self, resource: Resource[R]) -> R:
        """The process's instance of `resource`, opened on the first call (concurrent first calls open it once)."""
        if resource in self._opened:
            return cast(R, self._opened[resource])
        lock = self._locks.setdefault(resource, asyncio.Lock())
        async with lock:
            if resource not in self._opened:
                self._opened[resource] = await self._stack.enter_async_context(resource.open(self))
            return cast(R, self._opened[resource])

    def start_warming(self, wanted: Sequence[Resource[Any]]) -> asyncio.Task[None] | None:
        """Open `wanted` in the background, one after the other; `warming` names what is not open yet. The task
        is returned so the worker can stop on its failure (a model that cannot be loaded)."""
        self._to_warm = tuple(wanted)
        if not self._to_warm:
            return None

        async def warm() -> None:
            for resource in self._to_warm:
                await self.get(resource)
            # What warming loaded lives as long as the process (torch and the model: some 400,000 objects); out of
            # the collector's reach it costs nothing, in it every full collection walks it and stops the event loop
            # for it (0.28 s each on the dev VM with the model loaded, 0.05 s without).
            gc.freeze()

        self._warming = asyncio.create_task(warm(), name="warm-resources")
        return self._warming

    @property
    def warming(self) -> list[str]:
        """Names of the resources being opened before the worker takes work (empty once they are open)."""
        if self._warming is None or self._warming.done():
            return []
        return [resource.name for resource in self._to_warm if resource not in self._opened]

    async def wait_warm(self, timeout_s: float) -> None:
        """Return once warming is over (or failed), or after `timeout_s`."""
        if self._warming is not None and not self._warming.done():
            await asyncio.wait({self._warming}, timeout=timeout_s)

    def opened(self) -> list[str]:
        """Names of the resources opened so far (for logs and tests)."""
        return [resource.name for resource in self._opened]

    async def aclose(self) -> None:
        """Close every opened resource, last opened first (the pools and Redis belong to whoever opened them)."""
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        await self._stack.aclose()
        self._opened.clear()
