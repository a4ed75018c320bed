"""OpenTelemetry traces of a real ingestion (in-process worker, scripted LLM over HTTP, real Postgres and Redis),
exported to the SDK's in-memory exporter: one trace for the attempt, the LLM call and the write transaction under its
root with their Postgres statements under them, the sync dispatchers' store writes in traces of their own, the trace
id on the ledger row and in the job's log lines, and no conversation text anywhere in a span."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from jobs.runtime import tracing
from settings import Settings, load_settings
from store import ledger
from store.llm_calls import list_llm_calls
from tests.cli.runner import run_cli
from tests.jobs.conftest import BurstRunner
from tests.jobs.test_ingest_job import SAMPLE_ANSWER, ingest, one_conversation

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed (pip install 'orrery[tracing]')")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

CONVERSATION_TEXT = ("How was the run?", "Ran 10k, no stops!")
"""What one_conversation writes: must never reach a span."""


pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers(), llm_timeout_s=10)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    installed = tracing.install(spans)
    try:
        yield spans
    finally:
        installed.shutdown()


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id if parent.context is not None else None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


def is_postgres(span: ReadableSpan) -> bool:
    return (span.attributes or {}).get("db.system") == "postgresql"


async def test_an_ingestion_is_one_trace_with_the_llm_call_the_write_and_their_statements(
    exporter: InMemorySpanExporter,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    settings: Settings,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    user_id, conversation_id = await one_conversation(pool)
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    job_id = await ingest(redis_client, pool, conversation_id)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await run_burst()

    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "job ingest"]
    assert root.parent is None and root.context is not None
    attributes: dict[str, Any] = dict(root.attributes or {})
    assert attributes["orrery.job.id"] == job_id and attributes["orrery.job.attempt"] == 1
    assert attributes["orrery.queue"] == "interactive" and attributes["orrery.job.outcome"] == "succeeded"
    trace_id = format(root.context.trace_id, "032x")
    traced = [s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id]

    # the ledger row and every log line of the attempt lead to this trace
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded" and run.trace_id == trace_id
    attempt_lines = [line for line in logs if line.get("job_id") == job_id]
    assert {"job started", "job succeeded", "ingest.done"} <= {line["event"] for line in attempt_lines}
    assert {line.get("trace_id") for line in attempt_lines} == {trace_id}
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path)}
    shown = await asyncio.to_thread(run_cli, "jobs", "show", job_id, env=env)
    assert f"trace of run {run.id} (attempt 1): {trace_id}" in shown.stdout, shown.stdout + shown.stderr

    # root → the LLM call (model, tokens as recorded) → the INSERT of its record
    under_root = children(traced, root)
    (llm,) = [s for s in under_root if s.name == "llm.call"]
    (call,) = await list_llm_calls(pool, user_id)
    llm_attributes: dict[str, Any] = dict(llm.attributes or {})
    assert llm_attributes["gen_ai.request.model"] == settings.ingestion_model == call.call.model
    assert llm_attributes["gen_ai.usage.input_tokens"] == call.call.prompt_tokens > 0
    assert llm_attributes["gen_ai.usage.output_tokens"] == call.call.completion_tokens > 0
    assert llm_attributes["orrery.llm.cached_tokens"] == call.call.cached_tokens
    assert llm_attributes["orrery.agent"] == call.call.agent and llm_attributes["orrery.llm.outcome"] == "ok"
    assert llm.start_time is not None and root.start_time is not None and llm.start_time >= root.start_time
    (record_insert,) = [s for s in children(traced, llm) if is_postgres(s)]
    assert "INSERT INTO runtime.llm_calls" in str((record_insert.attributes or {}).get("db.statement"))

    # root → the write transaction → its statements (the memory rows, the conversation's status, the outbox)
    (write,) = [s for s in under_root if s.name == "store.write"]
    assert dict(write.attributes or {}) == {"orrery.store": "postgres", "orrery.write": "ingestion"}
    statements = [str((s.attributes or {}).get("db.statement")) for s in children(traced, write) if is_postgres(s)]
    assert any("memory_units" in sql for sql in statements) and any("runtime.outbox" in sql for sql in statements)

    # the ledger's own statements and the job's Redis reads (the turn context) belong to the attempt too
    assert any(is_postgres(s) and "runtime.job_runs" in str((s.attributes or {}).get("db.statement")) for s in traced)
    assert any((s.attributes or {}).get("db.system") == "redis" for s in traced)
    # the commit started the sync dispatchers: each is a trace of its own, its store's apply a span under the root
    for store in ("graph", "vector"):
        (sync_root,) = [
            s
            for s in spans
            if s.name == "job sync_stores" and (s.attributes or {}).get("orrery.job.id") == f"sync:{store}"
        ]
        applies = [s for s in children(spans, sync_root) if s.name == "store.apply"]
        assert applies and all((s.attributes or {}).get("orrery.store") == store for s in applies)
    # the worker's polling starts no trace of its own: every exported span belongs to a job attempt
    roots = [s for s in spans if s.parent is None]
    assert roots and all(s.name.startswith(tracing.ROOT_PREFIX) for s in roots)

    # nothing a user wrote or the model answered is in any attribute of any span
    texts = [*CONVERSATION_TEXT, SAMPLE_ANSWER["title"], SAMPLE_ANSWER["context_summary"]]
    texts += [unit["content"] for unit in SAMPLE_ANSWER["memory_units"]]
    values = [str(v) for s in spans for v in (s.attributes or {}).values()]
    assert not [(text, v) for text in texts for v in values if text in v]


def test_tracing_is_off_without_an_endpoint_and_the_url_follows_the_otlp_convention() -> None:
    assert tracing.start(load_settings()) is None
    assert tracing.current_trace_id() is None
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"
