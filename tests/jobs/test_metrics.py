"""Prometheus metrics: a real `run.py worker --processes 2` is scraped over HTTP after a few jobs and its numbers are
checked against the ledger; the single-process endpoint serves every metric of the deployment's contract
(tests/deploy/metric_names.py) with exactly its labels; the LLM counters follow the calls a real client makes; a
backlog that cannot be read costs its samples, never the scrape; `run.py metrics` prints what the endpoint serves;
the nightly reconcile counts the drift it finds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from agents.llm import CallContext, InMemoryCallLog, LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from core.errors import BudgetExceededError
from core.llm_records import CallOutcome, CallPurpose, LLMCallRecord, ResponseFormatMode
from core.vocabulary import NodeLabel
from jobs.catalog import JOBS
from jobs.diagnostics import ECHO
from jobs.reconcile import RECONCILE
from jobs.runtime import metrics
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import INTERACTIVE, QUEUES, queue_key
from jobs.runtime.registry import JobSpec
from prompts import RenderedPrompt
from store import ledger, outbox
from tests.cli.runner import ROOT, assert_one_line_error, clean_env, run_cli
from tests.deploy.metric_names import HISTOGRAMS, METRICS
from tests.jobs.conftest import FAST_ENV, BurstRunner, WorkerProcesses, wait_for_workers, wait_until
from tests.jobs.test_reconcile_job import inject_drift, synced
from tests.jobs.testjobs import TEST_JOBS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def ledger_rows(pool: asyncpg.Pool, job_name: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch("SELECT state, attempt, error_class FROM runtime.job_runs WHERE job_name = $1", job_name)
    )


async def test_a_worker_with_processes_serves_what_the_ledger_records(
    workers: WorkerProcesses, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """One job succeeds, one is retried then succeeds, one is dead, one deferred, and one is taken over after its
    process is killed: the parent's endpoint sums its processes (the killed one's counts included)."""
    port = free_port()
    quiet = {spec.name: "off" for spec in JOBS.all() if spec.cron} | {"expire_sessions": "* * * * * *"}
    long_s = 2.5
    cases: dict[str, dict[str, Any]] = {
        "long": {"sleep_s": long_s},
        "ok": {},
        "retried": {"fail_mode": "transient", "fail_attempts": 1},
        "dead": {"fail_mode": "permanent"},
        "deferred": {"fail_mode": "deferred", "defer_s": 3600},
    }
    ids = {name: (await enqueue(redis_client, pool, ECHO, args)).job_id for name, args in cases.items()}
    proc = workers.start("--processes", "2", ORRERY_METRICS_PORT=str(port), ORRERY_CRON=json.dumps(quiet))
    await wait_for_workers(redis_client, 2)

    async def only_long_running() -> ledger.JobRun | None:
        """The long job in its first attempt, the others all settled: killing its process interrupts no other."""
        runs = {name: await ledger.latest_run(pool, job_id) for name, job_id in ids.items()}
        states = {name: (run.state, run.error_class) if run is not None else None for name, run in runs.items()}
        settled = {
            "ok": ("succeeded", None),
            "retried": ("succeeded", None),
            "dead": ("dead", "PermanentError"),
            "deferred": ("queued", "DeferredError"),
        }
        long = runs["long"]
        ready = all(states[name] == state for name, state in settled.items())
        return long if ready and long is not None and long.state == "running" and long.attempt == 1 else None

    running = await wait_until(only_long_running)
    during = await wait_until(lambda: _scraped(port))
    assert value(during, "orrery_jobs_in_flight", queue=INTERACTIVE) >= 1
    os.kill(int(running.worker_id.rsplit(":", 1)[1]), signal.SIGKILL)  # its lease lapses; another process takes over

    async def finished() -> bool:
        long = await ledger.latest_run(pool, ids["long"])
        crons = [r for r in await ledger_rows(pool, "expire_sessions") if r["state"] == "succeeded"]
        return long is not None and long.state == "succeeded" and len(crons) >= 2

    await wait_until(finished, timeout=40)
    cron_before = await ledger_rows(pool, "expire_sessions")
    samples = await scrape(port)
    cron_after = await ledger_rows(pool, "expire_sessions")

    rows = await ledger_rows(pool, "diag.echo")
    by_state = {state: sum(1 for r in rows if r["state"] == state) for state in ("succeeded", "dead", "queued")}
    deferred = sum(1 for r in rows if r["state"] == "queued" and r["error_class"] == "DeferredError")
    extra_attempts = sum(r["attempt"] - 1 for r in rows if r["state"] in ("succeeded", "dead"))
    takeovers = value(samples, "orrery_lease_takeovers_total")
    outcomes = {
        outcome: value(samples, "orrery_jobs_total", job="diag.echo", outcome=outcome)
        for outcome in ("succeeded", "retried", "dead", "deferred")
    }
    # the ledger: three succeeded (one at attempt 2 after a retry, one at attempt 2 after the takeover), one dead,
    # one deferred (queued with its DeferredError); the metrics must say the same
    assert (by_state["succeeded"], by_state["dead"], deferred) == (3, 1, 1)
    assert outcomes == {"succeeded": 3.0, "retried": 1.0, "dead": 1.0, "deferred": 1.0}
    # the long job, and a cron run when one happened to be in the killed process too (then at attempt 2)
    assert takeovers == 1 + sum(1 for r in cron_after if r["attempt"] > 1)
    assert outcomes["retried"] + 1 == extra_attempts
    # every attempt that reached its handler and was recorded, i.e. all but the killed one
    assert value(samples, "orrery_job_duration_seconds_count", job="diag.echo") == sum(outcomes.values())
    assert value(samples, "orrery_job_duration_seconds_sum", job="diag.echo") >= long_s
    assert value(samples, "orrery_jobs_in_flight", queue=INTERACTIVE) == 0  # the dead process's gauge is dropped
    # cron: a slot is counted right after its run is enqueued (one ledger row each)
    fired = value(samples, "orrery_cron_fired_total", job="expire_sessions")
    assert len(cron_before) <= fired <= len(cron_after)
    # the deferred job waits an hour in the interactive queue: the one entry, none due
    assert value(samples, "orrery_queue_depth", queue=INTERACTIVE) == await redis_client.zcard(queue_key(INTERACTIVE))
    assert value(samples, "orrery_queue_depth", queue=INTERACTIVE) == 1
    assert value(samples, "orrery_queue_oldest_age_seconds", queue=INTERACTIVE) == 0
    assert value(samples, "orrery_outbox_backlog", store="graph") == 0

    proc.send_signal(signal.SIGTERM)  # the parent stops serving and its children drain
    assert proc.wait(30) == 0, workers.log(0)


async def _scraped(port: int) -> Samples | None:
    try:
        return await scrape(port)
    except httpx.HTTPError:
        return None


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mood: str


PROMPT = RenderedPrompt(name="probe", version="0123456789ab", system="You judge moods.", user="How was the day?")


@pytest.fixture
def served(database_url: str, redis_url: str) -> Iterator[metrics.MetricsServer]:
    server = metrics.serve(free_port(), database_url, redis_url, QUEUES, addr="127.0.0.1")
    try:
        yield server
    finally:
        server.close()


async def _budget_spent(ctx: JobContext, args: BaseModel) -> None:
    raise BudgetExceededError("user u has used 10 LLM tokens today", datetime.now(UTC) + timedelta(hours=1))


SPENT = JobSpec(
    name="test.budget-spent",
    args_model=ECHO.args_model,
    handler=_budget_spent,
    queue=INTERACTIVE,
    timeout_s=5,
    max_tries=3,
    backoff_s=0.1,
    dedupe_key=None,
    cron=None,
    description="Test-only: the LLM layer's budget deferral.",
)


CACHED_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"mood": "good"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2000, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 1536}},
}
"""A completion as OpenAI sends it when most of the prompt came from its prompt cache."""


async def test_one_process_serves_every_metric_of_the_contract_with_its_labels(
    served: metrics.MetricsServer, pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    """Every name in tests/deploy/metric_names.py (what the dashboard and docs use) is served with exactly its labels
    once its event has happened; the LLM counters add up the calls a real client made over HTTP; the backlog
    gauges read Redis and Postgres at scrape time."""
    before = await scrape(served.port)
    run_burst.jobs = TEST_JOBS.with_jobs(SPENT)
    await enqueue(redis_client, pool, ECHO, {})
    await enqueue(redis_client, pool, SPENT, {})
    await run_burst(timeout=120)  # the first worker of a test process loads the local embedding model first
    metrics.reconcile_drift("graph", {"missing": 2, "extra": 0, "changed": 1})
    metrics.cron_fired("expire_sessions")
    metrics.lease_taken_over()

    inner = InMemoryCallLog()
    observed = metrics.ObservedCallLog(inner)
    context = CallContext(user_id="u-metrics", agent="probe", job_id="job-1")
    with ScriptedLLMServer() as server:
        server.enqueue(ScriptedReply.error(500, "busy"), ScriptedReply.garbled(json.dumps(CACHED_COMPLETION)))
        client = LLMClient(
            base_url=server.base_url, api_key="k", call_log=observed, max_retries=1, backoff_initial_s=0.01
        )
        try:
            await client.complete(PROMPT, Verdict, model="gpt-4o-mini", context=context)
        finally:
            await client.aclose()
    records = [record for _, record in inner.records]
    assert [r.outcome for r in records] == [CallOutcome.SERVER_ERROR, CallOutcome.OK]  # the real log got both

    await outbox.record_changes(pool, "u-metrics", outbox.changes(NodeLabel.CONCEPT, ["c1", "c2", "c3"]))
    served.collector._read_at = -float("inf")  # past the cache: the rows were just written
    after = await scrape(served.port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    llm = {"agent": "probe", "model": "gpt-4o-mini"}
    assert delta("orrery_llm_calls_total", **llm, outcome="server_error") == 1
    assert delta("orrery_llm_calls_total", **llm, outcome="ok") == 1
    ok = records[1]
    assert (ok.prompt_tokens, ok.cached_tokens, ok.completion_tokens) == (2000, 1536, 12)
    assert delta("orrery_llm_tokens_total", **llm, kind="prompt") == 2000
    assert delta("orrery_llm_tokens_total", **llm, kind="cached") == 1536
    assert delta("orrery_llm_tokens_total", **llm, kind="completion") == 12
    assert delta("orrery_llm_latency_seconds_count", **llm) == 2
    cost = ((2000 - 1536) * 0.15 + 1536 * 0.075 + 12 * 0.60) / 1_000_000  # cached prompt tokens at half price
    assert delta("orrery_llm_cost_usd_total", **llm) == pytest.approx(cost)
    assert delta("orrery_budget_deferrals_total") == 1
    assert delta("orrery_jobs_total", job="test.budget-spent", outcome="deferred") == 1
    assert delta("orrery_jobs_total", job="diag.echo", outcome="succeeded") == 1
    assert delta("orrery_reconcile_drift_total", store="graph", kind="missing") == 2
    assert delta("orrery_reconcile_drift_total", store="graph", kind="changed") == 1
    assert value(after, "orrery_outbox_backlog", store="graph") == 3
    assert value(after, "orrery_outbox_backlog", store="vector") == 3
    assert value(after, "orrery_outbox_lag_seconds", store="graph") > 0
    assert value(after, "orrery_queue_depth", queue=INTERACTIVE) == 1  # the deferred job
    assert value(after, "orrery_queue_oldest_age_seconds", queue=INTERACTIVE) == 0

    served_labels: dict[str, set[frozenset[str]]] = {}
    for name, labels in after:
        if name.startswith("orrery_"):
            base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            base = base if base in HISTOGRAMS else name
            served_labels.setdefault(base, set()).add(frozenset(k for k, _ in labels if k != "le"))
    assert set(served_labels) == set(METRICS)
    assert {name: {frozenset(METRICS[name])} for name in METRICS} == served_labels


def _record(model: str, prompt_tokens: int, completion_tokens: int) -> LLMCallRecord:
    return LLMCallRecord(
        user_id="u",
        job_id=None,
        agent="a",
        model=model,
        endpoint="http://127.0.0.1:1/v1",
        prompt_name="p",
        prompt_version="v",
        purpose=CallPurpose.ANSWER,
        response_format=ResponseFormatMode.JSON_SCHEMA,
        attempt=1,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=5,
        outcome=CallOutcome.OK,
        error=None,
    )


def test_cost_uses_the_price_of_a_dated_model_and_counts_an_unknown_model_as_zero() -> None:
    assert metrics.estimated_cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert metrics.estimated_cost_usd("gpt-4o-mini", 1_000_000, 0, 1_000_000) == pytest.approx(0.075)  # all cached
    assert metrics.estimated_cost_usd("gpt-4.1", 1_000_000, 0, 500_000) == pytest.approx(1.25)  # 1.00 + 0.25
    assert metrics.estimated_cost_usd("gpt-4o", 1_000, 0, 5_000) == pytest.approx(1_000 * 1.25 / 1e6)  # never > prompt
    assert metrics.list_price_usd("llama3.1:8b", 10, 10) is None
    assert metrics.estimated_cost_usd("gpt-4o", 2_000_000, 0) == pytest.approx(5.0)
    assert metrics.estimated_cost_usd("gpt-4.1-mini", 0, 1_000_000) == pytest.approx(1.6)  # not gpt-4.1's price
    assert metrics.estimated_cost_usd("llama3.1:8b", 10_000, 10_000) == 0.0
    assert "llama3.1:8b" in metrics._unpriced  # said once, in a log line


async def test_a_backlog_that_cannot_be_read_costs_its_samples_not_the_scrape(
    database_url: str, tmp_path: Path
) -> None:
    """Redis away: no queue samples, the outbox ones still there, and the scrape answers 200."""
    server = metrics.serve(free_port(), database_url, f"unix://{tmp_path}/no-redis.sock", QUEUES, addr="127.0.0.1")
    try:
        samples = await scrape(server.port)
    finally:
        server.close()
    assert not [key for key in samples if key[0] in ("orrery_queue_depth", "orrery_queue_oldest_age_seconds")]
    assert value(samples, "orrery_outbox_backlog", store="graph") == 0
    assert ("orrery_outbox_backlog", frozenset({("store", "vector")})) in samples


def test_the_metrics_command_prints_a_workers_numbers(served: metrics.MetricsServer, tmp_path: Path) -> None:
    """`run.py metrics` reads the endpoint ORRERY_METRICS_PORT names: a table for a person, --json for scripts."""
    job = f"test.cli-{uuid.uuid4().hex[:6]}"
    metrics.job_finished(job, "succeeded", 40)
    metrics.job_finished(job, "succeeded", 60)
    metrics.job_finished(job, "dead", None)
    env = clean_env(**FAST_ENV, ORRERY_METRICS_PORT=str(served.port), ORRERY_DATA_DIR=str(tmp_path))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(ROOT / "run.py"), "metrics", *args]
        return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    as_json = cli("--json")
    assert as_json.returncode == 0, as_json.stderr
    found: dict[str, Any] = json.loads(as_json.stdout)["metrics"]
    jobs = {(s["labels"]["job"], s["labels"]["outcome"]): s["value"] for s in found["orrery_jobs_total"]}
    assert (jobs[(job, "succeeded")], jobs[(job, "dead")]) == (2, 1)
    (duration,) = [s for s in found["orrery_job_duration_seconds"] if s["labels"]["job"] == job]
    assert (duration["count"], duration["sum"]) == (2, 0.1)
    assert 0.025 < duration["p50"] <= 0.05 < duration["p95"] <= 0.1  # within the buckets that hold them

    table = cli()
    assert table.returncode == 0, table.stderr
    assert "orrery_jobs_total" in table.stdout and "2 observed" in table.stdout

    unset = clean_env(**FAST_ENV, ORRERY_DATA_DIR=str(tmp_path))
    missing = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "metrics"], env=unset, cwd=ROOT, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "set ORRERY_METRICS_PORT" in missing.stderr


def drift_count(store: str, kind: str) -> float:
    return REGISTRY.get_sample_value("orrery_reconcile_drift_total", {"store": store, "kind": kind}) or 0.0


async def test_the_reconcile_job_counts_the_drift_it_finds_by_store_and_kind(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    ana, _ = await synced(pool, redis_client, run_burst)
    await inject_drift(pool, ana)  # one graph node and one vector item gone behind the outbox's back
    kinds = [(store, kind) for store in outbox.STORES for kind in metrics.DRIFT_KINDS]
    before = {key: drift_count(*key) for key in kinds}
    await enqueue(redis_client, pool, RECONCILE, {})
    await run_burst()
    found = {key: drift_count(*key) - before[key] for key in kinds}
    assert found == {key: 1.0 if key[1] == "missing" else 0.0 for key in kinds}


def test_a_metrics_port_in_use_stops_the_worker_with_one_line(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ORRERY_DATA_DIR": str(tmp_path),
            "ORRERY_LLM": "scripted",
        }
        result = run_cli("worker", "--burst", env={**env, "ORRERY_METRICS_PORT": str(port)})
    assert_one_line_error(result, f"cannot serve metrics on port {port}")
