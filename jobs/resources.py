"""What every job in one worker process shares: settings, the Postgres pool, Redis and the lazily opened LLM client."""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import AsyncExitStack

import asyncpg
import redis.asyncio as aioredis

from agents.llm import LLMClient, open_llm_client
from settings import Settings
from store.llm_calls import PostgresCallLog


def make_worker_id() -> str:
    """host:pid, recorded in the ledger so an operator can tell which process ran (or abandoned) a run."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerResources:
    """Opened once per process; the LLM client only when a job first asks for it (maintenance jobs never do)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, worker_id: str) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.worker_id = worker_id
        self._stack = AsyncExitStack()
        self._llm: LLMClient | None = None
        self._llm_lock = asyncio.Lock()

    async def llm(self) -> LLMClient:
        async with self._llm_lock:
            if self._llm is None:
                self._llm = await self._stack.enter_async_context(
                    open_llm_client(self.settings, PostgresCallLog(self.pool))
                )
            return self._llm

    async def aclose(self) -> None:
        """Close the LLM client if one was opened (the pool and Redis belong to whoever opened them)."""
        await self._stack.aclose()
        self._llm = None
