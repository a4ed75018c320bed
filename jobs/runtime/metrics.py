"""Prometheus metrics of a worker: every metric Orrery exports, defined here and nowhere else.

Counters and histograms are updated where the events happen (jobs/runtime/attempt.py for outcomes, durations and
lease takeovers, the scheduler for cron slots, `ObservedCallLog` for LLM calls); queue depth and the outbox backlog
are read from Redis and Postgres when Prometheus scrapes (`BacklogCollector`), so one scrape of any worker sees the
whole backlog, including jobs no worker has touched. Labels never carry a user id: job names, queues, stores, agents
and models only, all bounded by the code and the settings.

Several processes (`run.py worker --processes N`) use prometheus_client's multiprocess mode: the supervising parent
points PROMETHEUS_MULTIPROC_DIR at a fresh directory before it spawns the children (`multiprocess_dir`), each child
writes its values there, and the parent alone serves the aggregate (`serve`). A dead child's counters stay counted;
its in-flight gauge is dropped (`process_dead`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from core.llm_records import CallLog, LLMCallRecord
from jobs.runtime import queue as redis_queue
from jobs.runtime import tracing
from store import outbox
from store.postgres import connect
from store.redis import connect_redis

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

logger = structlog.get_logger("orrery.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No `_created` series next to every counter: nothing reads them, and multiprocess mode has none anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]

JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

JOBS_TOTAL = Counter(
    "orrery_jobs", "Job attempts by how they ended: succeeded, retried, dead, deferred.", ["job", "outcome"]
)
JOB_DURATION = Histogram(
    "orrery_job_duration_seconds", "Run time of job attempts (every outcome).", ["job"], buckets=JOB_BUCKETS
)
JOBS_IN_FLIGHT = Gauge("orrery_jobs_in_flight", "Job attempts running now.", ["queue"], multiprocess_mode="livesum")
LEASE_TAKEOVERS = Counter(
    "orrery_lease_takeovers", "Runs taken over from a worker that died mid-run (its lease lapsed)."
)
CRON_FIRED = Counter("orrery_cron_fired", "Cron slots this worker claimed and enqueued.", ["job"])
LLM_CALLS = Counter(
    "orrery_llm_calls", "LLM HTTP attempts by outcome (ok or the error).", ["agent", "model", "outcome"]
)
LLM_TOKENS = Counter(
    "orrery_llm_tokens",
    "LLM tokens: prompt (cached ones included), of which cached (served from the provider's prompt cache), completion.",
    ["agent", "model", "kind"],
)
LLM_LATENCY = Histogram(
    "orrery_llm_latency_seconds", "LLM HTTP attempt latency.", ["agent", "model"], buckets=LLM_BUCKETS
)
LLM_COST = Counter(
    "orrery_llm_cost_usd",
    "Estimated LLM cost from PRICES_USD_PER_MILLION, cached prompt tokens at the cached rate (unknown models: 0).",
    ["agent", "model"],
)
BUDGET_DEFERRALS = Counter("orrery_budget_deferrals", "Jobs deferred to the next UTC day by a user's token budget.")
RECONCILE_DRIFT = Counter(
    "orrery_reconcile_drift", "Drift reconcile found (and repaired through the outbox).", ["store", "kind"]
)


class ModelPrice(NamedTuple):
    """USD per million tokens: uncached prompt, cached prompt (the provider's prompt-cache discount), completion."""

    prompt: float
    cached_prompt: float
    completion: float

    @property
    def cached_discount(self) -> float:
        """What a cached prompt token costs as a share of an uncached one (gpt-4o-mini: 0.5)."""
        return self.cached_prompt / self.prompt if self.prompt else 1.0


PRICES_USD_PER_MILLION: dict[str, ModelPrice] = {
    # a dated name like gpt-4o-mini-2024-07-18 takes its prefix's price
    "gpt-4o-mini": ModelPrice(0.15, 0.075, 0.60),
    "gpt-4o": ModelPrice(2.50, 1.25, 10.00),
    "gpt-4.1-nano": ModelPrice(0.10, 0.025, 0.40),
    "gpt-4.1-mini": ModelPrice(0.40, 0.10, 1.60),
    "gpt-4.1": ModelPrice(2.00, 0.50, 8.00),
    "text-embedding-3-small": ModelPrice(0.02, 0.02, 0.0),  # embeddings have no prompt cache
    "text-embedding-3-large": ModelPrice(0.13, 0.13, 0.0),
}
"""OpenAI's list prices (standard tier, USD per million tokens: input, cached input, output) as published on its
pricing page, the same from April 2025 (gpt-4.1's launch) to the check on 2026-12-07; cached input is half the input
price for the gpt-4o family and a quarter for gpt-4.1's. For the estimate in orrery_llm_cost_usd_total,
`run.py jobs show` and bench/bench_cost.py. A model not listed costs 0, and the worker says so once per model."""

_unpriced: set[str] = set()


def price_of(model: str) -> ModelPrice | None:
    """The price of `model`, by exact name or its longest listed prefix."""
    if model in PRICES_USD_PER_MILLION:
        return PRICES_USD_PER_MILLION[model]
    prefixes = [name for name in PRICES_USD_PER_MILLION if model.startswith(name + "-")]
    return PRICES_USD_PER_MILLION[max(prefixes, key=len)] if prefixes else None


def list_price_usd(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float | None:
    """What a call costs at list price, its cached prompt tokens (part of `prompt_tokens`) at the cached rate; None
    for a model without a price."""
    price = price_of(model)
    if price is None:
        return None
    cached = min(cached_tokens, prompt_tokens)
    uncached = prompt_tokens - cached
    return (uncached * price.prompt + cached * price.cached_prompt + completion_tokens * price.completion) / 1_000_000


def estimated_cost_usd(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """`list_price_usd`, with 0 for a model without a price (logged once per model)."""
    cost = list_price_usd(model, prompt_tokens, completion_tokens, cached_tokens)
    if cost is None:
        if model not in _unpriced:
            _unpriced.add(model)
            logger.warning(
                f"no price for LLM model {model!r}: its calls count 0 in orrery_llm_cost_usd_total "
                "(add it to PRICES_USD_PER_MILLION in jobs/runtime/metrics.py)",
                model=model,
            )
        return 0.0
    return cost


def job_finished(job: str, outcome: str, duration_ms: int | None) -> None:
    """One attempt ended: succeeded, retried, dead or deferred (duration None when the handler never ran)."""
    JOBS_TOTAL.labels(job, outcome).inc()
    if duration_ms is not None:
        JOB_DURATION.labels(job).observe(duration_ms / 1000)


@contextmanager
def in_flight(queue: str) -> Iterator[None]:
    with JOBS_IN_FLIGHT.labels(queue).track_inprogress():
        yield


def lease_taken_over() -> None:
    LEASE_TAKEOVERS.inc()


def cron_fired(job: str) -> None:
    CRON_FIRED.labels(job).inc()


def budget_deferred() -> None:
    BUDGET_DEFERRALS.inc()


DRIFT_KINDS = ("missing", "extra", "changed")
"""What reconcile counts as drift; rows an outbox entry is still carrying ("pending") are the dispatcher's lag."""


def reconcile_drift(store: str, counts: Mapping[str, int]) -> None:
    """Drift one reconcile pass found in `store` (StoreDrift.totals()), by kind: missing, extra, changed."""
    for kind in DRIFT_KINDS:
        if counts.get(kind):
            RECONCILE_DRIFT.labels(store, kind).inc(counts[kind])


class ObservedCallLog:
    """A CallLog that counts every LLM call record (calls, tokens, latency, estimated cost by agent and model) and
    traces it, then hands it to the real log: every call already passes through the CallLog port, so this sees all
    of them without the LLM client knowing."""

    def __init__(self, inner: CallLog) -> None:
        self._inner = inner

    async def record(self, call: LLMCallRecord) -> None:
        LLM_CALLS.labels(call.agent, call.model, call.outcome.value).inc()
        LLM_TOKENS.labels(call.agent, call.model, "prompt").inc(call.prompt_tokens)
        LLM_TOKENS.labels(call.agent, call.model, "cached").inc(call.cached_tokens)
        LLM_TOKENS.labels(call.agent, call.model, "completion").inc(call.completion_tokens)
        LLM_LATENCY.labels(call.agent, call.model).observe(call.latency_ms / 1000)
        LLM_COST.labels(call.agent, call.model).inc(
            estimated_cost_usd(call.model, call.prompt_tokens, call.completion_tokens, call.cached_tokens)
        )
        with tracing.llm_call_span(call):  # the call's recording (a Postgres insert) is traced under it
            await self._inner.record(call)

    async def tokens_used(self, user_id: str, since: datetime) -> int:
        return await self._inner.tokens_used(user_id, since)


# --- read at scrape time ------------------------------------------------------------------------------------------


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "depth": GaugeMetricFamily(
            "orrery_queue_depth", "Jobs in the queue (due and scheduled), read from Redis.", labels=["queue"]
        ),
        "oldest": GaugeMetricFamily(
            "orrery_queue_oldest_age_seconds", "How long the oldest due job has waited (0: none due).", labels=["queue"]
        ),
        "backlog": GaugeMetricFamily(
            "orrery_outbox_backlog", "Outbox rows a derived store has yet to apply.", labels=["store"]
        ),
        "lag": GaugeMetricFamily(
            "orrery_outbox_lag_seconds", "Age of a store's oldest unapplied outbox row (0: none).", labels=["store"]
        ),
        "failing": GaugeMetricFamily(
            "orrery_sync_store_failing_seconds",
            "How long the dispatcher has found a derived store failing, as it happens (0: it answers).",
            labels=["store"],
        ),
    }


class BacklogCollector(Collector):
    """Queue depth and oldest due age per queue (Redis) and outbox backlog, lag and failing time per store (Postgres),
    read when scraped, at most once per `cache_s`. A source that cannot be read gives no samples and one log line;
    the scrape itself never fails."""

    def __init__(self, database_url: str, redis_url: str, queues: Sequence[str], *, cache_s: float = 1.0) -> None:
        self._database_url = database_url
        self._redis_url = redis_url
        self._queues = tuple(queues)
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._cached: list[Metric] = []

    def describe(self) -> Iterable[Metric]:
        """The families without samples: registering must not read Redis or Postgres."""
        return list(_families().values())

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._read_at >= self._cache_s:
                self._cached = asyncio.run(self._read())  # the scrape thread has no event loop of its own
                self._read_at = time.monotonic()
            return list(self._cached)

    async def _read(self) -> list[Metric]:
        families = _families()
        try:
            async with asyncio.timeout(3):
                for queue, (depth, oldest_s) in (await self._queues_now()).items():
                    families["depth"].add_metric([queue], depth)
                    families["oldest"].add_metric([queue], oldest_s)
        except Exception as exc:
            logger.warning("metrics: queue depth not read; no sample this scrape", error=_one_line(exc))
        try:
            async with asyncio.timeout(3):
                for backlog in await self._outbox_now():
                    families["backlog"].add_metric([backlog.store], backlog.rows)
                    families["lag"].add_metric([backlog.store], backlog.oldest_lag_s)
                    families["failing"].add_metric([backlog.store], backlog.failing_for_s or 0.0)
        except Exception as exc:
            logger.warning("metrics: outbox backlog not read; no sample this scrape", error=_one_line(exc))
        return list(families.values())

    async def _queues_now(self) -> dict[str, tuple[int, float]]:
        client = await connect_redis(self._redis_url, timeout=2)
        try:
            return {q.queue: (q.depth, q.oldest_ready_age_s) for q in await redis_queue.depths(client, self._queues)}
        finally:
            await client.aclose()

    async def _outbox_now(self) -> list[outbox.Backlog]:
        conn = await connect(self._database_url, timeout=2)
        try:
            return await outbox.backlog(conn)
        finally:
            await conn.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


# --- serving ------------------------------------------------------------------------------------------------------


class MetricsPortError(Exception):
    """The metrics port cannot be bound; the message names it."""


@dataclass
class MetricsServer:
    """The HTTP endpoint (GET /metrics) of one worker process or of a --processes parent."""

    port: int
    registry: CollectorRegistry
    collector: BacklogCollector
    _httpd: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self.registry.unregister(self.collector)


def serve(
    port: int,
    database_url: str,
    redis_url: str,
    queues: Sequence[str],
    *,
    multiprocess: str | None = None,
    addr: str = "0.0.0.0",  # a scrape comes from Prometheus on another host or container
) -> MetricsServer:
    """Serve /metrics on `port` from a thread: this process's metrics, or with `multiprocess` (the directory the
    children write to) the sum over them, plus the backlog read at scrape time."""
    registry = REGISTRY
    if multiprocess is not None:
        registry = CollectorRegistry()  # prometheus_client: never the default registry with MultiProcessCollector
        MultiProcessCollector(registry, path=multiprocess)  # type: ignore[no-untyped-call]
    collector = BacklogCollector(database_url, redis_url, queues)
    registry.register(collector)
    try:
        httpd, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        registry.unregister(collector)
        raise MetricsPortError(
            f"cannot serve metrics on port {port} ({exc.strerror or exc}); set ORRERY_METRICS_PORT to a free port, "
            "or unset it to serve none"
        ) from None
    logger.info("metrics served", port=port, path="/metrics", processes="all" if multiprocess else "this one")
    return MetricsServer(port, registry, collector, httpd, thread)


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for one `--processes` run, set in the environment the children inherit
    (so their prometheus_client writes there from its import on), removed afterwards with the previous value back."""
    previous = os.environ.get(MULTIPROC_ENV)
    path = tempfile.mkdtemp(prefix="orrery-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def process_dead(pid: int | None, path: str) -> None:
    """A child died: its in-flight gauge no longer counts (its counters do)."""
    if pid is not None:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
