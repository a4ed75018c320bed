"""What every job in one worker process shares: settings, the Postgres pool, Redis and the lazily opened LLM client."""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import AsyncExitStack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from agents.llm import LLMClient, open_llm_client
from settings import Settings
from store.llm_calls import PostgresCallLog


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


class WorkerResources:
    """Opened once per process; the LLM client only when a job first asks for it (maintenance jobs never do)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        worker_id: str,
        *,
        ledger_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.ledger_pool = ledger_pool or pool
        self.redis = redis
        self.worker_id = worker_id
        self._stack = AsyncExitStack()
        self._llm: LLMClient | None = None
        self._llm_lock = asyncio.Lock()

    async def llm(self) -> LLMClient:
        async with self._llm_lock:
            if self._llm is None:
                self._llm = await self._stack.enter_async_context(
                    open_llm_client(self.settings, PostgresCallLog(self.ledger_pool))
                )
            return self._llm

    async def aclose(self) -> None:
        """Close the LLM client if one was opened (the pool and Redis belong to whoever opened them)."""
        await self._stack.aclose()
        self._llm = None
