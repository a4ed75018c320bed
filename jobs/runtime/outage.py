"""Riding out a Redis or Postgres outage: one watch per worker process decides whether the worker may claim jobs.

Why: arq's poll loop dies on the first Redis ConnectionError, and a worker that exits on every blip needs an outside
supervisor to come back (a Redis restart of 11 s once left 43 of 80 conversations unprocessed). The watch probes both
stores (a PING, and a `SELECT 1` on a connection of its own so that a pool busy with long jobs never reads as an
outage); while one of them does not answer, the worker claims nothing, writes `degraded: …` into its health key when
Redis can hold it, and probes again with a short exponential backoff. When the store answers, claiming resumes. A
store away for longer than `outage_tolerance_s` ends the worker with one StoreOutage line, so its supervisor (or the
`--processes` parent) restarts it and an operator sees why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
import structlog

from store.postgres import redact_url

REDIS = "Redis"
POSTGRES = "Postgres"

PROBE_INTERVAL_S = 1.0
"""How often the stores are probed while both answer: a Postgres outage pauses claiming within about a second."""

FIRST_RETRY_S = 0.1
MAX_RETRY_S = 2.0
"""While a store is away it is probed after 0.1, 0.2, 0.4 … s, at most every 2 s: cheap, and claiming resumes soon
after the store is back."""

PROBE_TIMEOUT_S = 2.0

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)
"""What Redis being away looks like to a client (refused, socket gone, timed out, still loading its data)."""

POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    OSError,  # FileNotFoundError when the server's Unix socket is gone during a restart
    TimeoutError,
)

logger = structlog.get_logger("orrery.worker")


class StoreOutage(Exception):
    """A store stayed away past the tolerance; the message is the one line the operator needs."""


@dataclass
class _Away:
    since: float
    error: str


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class StoreWatch:
    """Whether Redis and Postgres answer, since when they do not, and the tolerance for that."""

    def __init__(
        self,
        *,
        redis_client: aioredis.Redis,
        redis_url: str,
        database_url: str,
        tolerance_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis_client
        self._database_url = database_url
        self._urls = {REDIS: redact_url(redis_url), POSTGRES: redact_url(database_url)}
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._away: dict[str, _Away] = {}
        self._answering = asyncio.Event()
        self._answering.set()
        self._conn: asyncpg.Connection | None = None

    @property
    def healthy(self) -> bool:
        return not self._away

    def is_away(self, store: str) -> bool:
        return store in self._away

    def status(self) -> str:
        """`ok`, or `degraded: Postgres unreachable for 12 s` (what the health key says)."""
        if not self._away:
            return "ok"
        now = self._clock()
        parts = [f"{store} unreachable for {now - away.since:.0f} s" for store, away in sorted(self._away.items())]
        return "degraded: " + ", ".join(parts)

    def failed(self, store: str, exc: BaseException) -> None:
        """A call to `store` failed as an outage does: claiming pauses until a probe gets an answer."""
        if store in self._away:
            self._away[store].error = _reason(exc)
            return
        self._away[store] = _Away(self._clock(), _reason(exc))
        self._answering.clear()
        logger.warning(
            "store unreachable; not claiming jobs until it answers",
            store=store,
            url=self._urls[store],
            error=_reason(exc),
            tolerance_s=self.tolerance_s,
        )

    def answered(self, store: str) -> None:
        away = self._away.pop(store, None)
        if away is not None:
            away_s = round(self._clock() - away.since, 1)
            logger.info("store reachable again; claiming resumes", store=store, away_s=away_s)
        if not self._away:
            self._answering.set()

    async def wait_healthy(self, timeout_s: float) -> None:
        """Return when both stores answer, or after `timeout_s`, whichever is first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._answering.wait()

    def check_tolerance(self) -> None:
        """Raise StoreOutage for the first store away longer than the tolerance."""
        now = self._clock()
        for store, away in sorted(self._away.items()):
            if now - away.since > self.tolerance_s:
                variable = "REDIS_URL" if store == REDIS else "DATABASE_URL"
                raise StoreOutage(
                    f"{store} at {self._urls[store]} unreachable for {now - away.since:.0f} s, longer than "
                    f"ORRERY_OUTAGE_TOLERANCE_S={self.tolerance_s:g} (last error {away.error}); check that the server "
                    f"is up and that {variable} points at it, then start the worker again"
                )

    async def probe(self) -> None:
        """Ask each store once (bounded by PROBE_TIMEOUT_S) and record the answer."""
        await self._probe(REDIS, self._ping_redis, REDIS_ERRORS)
        await self._probe(POSTGRES, self._ping_postgres, POSTGRES_ERRORS)

    async def _probe(
        self, store: str, ping: Callable[[], Awaitable[object]], errors: tuple[type[BaseException], ...]
    ) -> None:
        """A ping that does not answer, whatever it raises, is the store not answering: an error class a server
        shutting down raises that `errors` does not list must not end the watch (the worker would stop at once)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await ping()
        except errors as exc:
            self.failed(store, exc)
        except Exception as exc:
            logger.warning("store probe failed in an unlisted way", store=store, error=_reason(exc), exc_info=exc)
            self.failed(store, exc)
        else:
            self.answered(store)

    async def _ping_redis(self) -> None:
        await self._redis.ping()

    async def _ping_postgres(self) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._drop_connection()
            self._conn = await asyncpg.connect(self._database_url, timeout=PROBE_TIMEOUT_S)
        try:
            await self._conn.fetchval("SELECT 1")
        except BaseException:
            await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop`; raises StoreOutage when a store stays away past the tolerance."""
        retries = 0
        try:
            while not stop.is_set():
                await self.probe()
                self.check_tolerance()
                retries = 0 if self.healthy else retries + 1
                delay = PROBE_INTERVAL_S if self.healthy else min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (retries - 1))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        finally:
            await self._drop_connection()
