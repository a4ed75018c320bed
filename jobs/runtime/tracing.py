"""Optional OpenTelemetry traces: one trace per job attempt, with its Postgres statements, Redis commands, LLM calls
and store writes as spans under it.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (`start`), and then only with the `tracing` extra installed
(`pip install 'orrery[tracing]'`): the core install never imports opentelemetry, so every helper here is a no-op
until a provider is installed. Spans are sent over OTLP/HTTP (protobuf) to `{endpoint}/v1/traces`; the standard
OTEL_SERVICE_NAME (default orrery-worker) and OTEL_EXPORTER_OTLP_HEADERS apply.

What a span may hold: ids (job id, attempt, queue), model names, token counts, outcomes and SQL text with its
placeholders. Never conversation text: asyncpg statements are traced without their parameters, Redis commands with
their arguments replaced by `?` (both instrumentations' defaults), and the LLM span is built from the call's record
(core/llm_records.py), which holds no prompt or answer.

Why a sampler of our own: the worker polls Redis every few milliseconds, and each poll would otherwise be a trace of
its own. Only a job attempt starts a trace (`attempt_span`); Postgres and Redis spans outside one are dropped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from core.llm_records import CallOutcome, LLMCallRecord
from settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

logger = structlog.get_logger("orrery.tracing")

ROOT_PREFIX = "job "
"""A job attempt's span is named `job {name}`; it is the only span that may start a trace."""

EXTRA_MISSING = (
    "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed; no traces are sent "
    "(install the extra: pip install 'orrery[tracing]')"
)


@dataclass
class Tracing:
    """The installed provider and instrumentations of this process; `shutdown` flushes and removes them."""

    provider: TracerProvider
    tracer: Tracer
    instrumentors: list[Any] = field(default_factory=list)

    def shutdown(self) -> None:
        global _active
        for instrumentor in self.instrumentors:
            instrumentor.uninstrument()
        self.provider.shutdown()
        if _active is self:
            _active = None


_active: Tracing | None = None


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base endpoint (as OTEL_EXPORTER_OTLP_ENDPOINT means it)."""
    return endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"


def start(settings: Settings) -> Tracing | None:
    """Install tracing when an OTLP endpoint is configured; None (and one warning when the extra is missing)
    otherwise."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning(EXTRA_MISSING)
        return None
    tracing = install(OTLPSpanExporter(endpoint=traces_url(endpoint)), batch=True)
    logger.info("traces sent", endpoint=traces_url(endpoint))
    return tracing


def install(exporter: SpanExporter, *, batch: bool = False) -> Tracing:
    """A tracer provider exporting to `exporter` (batched in production; at once for tests' in-memory exporter), with
    Postgres (asyncpg) and Redis instrumented under it. One per process: a second replaces the first."""
    global _active
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    if _active is not None:
        _active.shutdown()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "orrery-worker"})
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_job_roots()))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    instrumentors: list[Any] = [AsyncPGInstrumentor(), RedisInstrumentor()]  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    _active = Tracing(provider, provider.get_tracer("orrery"), instrumentors)
    return _active


def _job_roots() -> Any:
    """The root sampler: a trace starts only at a job attempt's span (the rest follow their parent)."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class JobAttemptsOnly(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            if name.startswith(ROOT_PREFIX):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, kwargs.get("attributes"))
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return "OrreryJobAttemptsOnly"

    return JobAttemptsOnly()


@contextmanager
def attempt_span(job: str, job_id: str, attempt: int, queue: str) -> Iterator[None]:
    """The root span of one job attempt (a new trace, whatever was current), current while the attempt runs."""
    if _active is None:
        yield
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind

    attributes: dict[str, str | int] = {
        "orrery.job.name": job,
        "orrery.job.id": job_id,
        "orrery.job.attempt": attempt,
        "orrery.queue": queue,
    }
    with _active.tracer.start_as_current_span(
        f"{ROOT_PREFIX}{job}",
        context=Context(),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,  # arq's Retry passes through here on every retry; the outcome says what happened
        set_status_on_exception=False,
    ):
        yield


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits) when tracing records it, for the ledger row and the log lines."""
    if _active is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid and context.trace_flags.sampled else None


def annotate_outcome(outcome: str, error_class: str | None = None) -> None:
    """Put how the attempt ended on its span; an attempt that failed (retried or dead) is marked as an error."""
    if _active is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    span.set_attribute("orrery.job.outcome", outcome)
    if error_class:
        span.set_attribute("orrery.job.error_class", error_class)
    if outcome in ("retried", "dead"):
        span.set_status(Status(StatusCode.ERROR, error_class or outcome))


@contextmanager
def span(name: str, attributes: Mapping[str, str | int | float | bool | Sequence[str]] | None = None) -> Iterator[None]:
    """A span around a step worth seeing in the trace (a store write); nothing without tracing."""
    if _active is None:
        yield
        return
    with _active.tracer.start_as_current_span(name, attributes=attributes):
        yield


@contextmanager
def llm_call_span(call: LLMCallRecord) -> Iterator[None]:
    """A span for one LLM HTTP attempt, made from its record when the call has ended (so it starts `latency_ms`
    ago); the record's own write runs inside it. Model, tokens, outcome and prompt version; never the text."""
    if _active is None:
        yield
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attributes: dict[str, str | int] = {
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": call.prompt_tokens,
        "gen_ai.usage.output_tokens": call.completion_tokens,
        "orrery.llm.cached_tokens": call.cached_tokens,
        "orrery.agent": call.agent,
        "orrery.llm.outcome": call.outcome.value,
        "orrery.llm.prompt": f"{call.prompt_name}@{call.prompt_version}",
        "orrery.llm.purpose": call.purpose.value,
        "orrery.llm.attempt": call.attempt,
        "orrery.llm.endpoint": call.endpoint,
        "orrery.llm.latency_ms": call.latency_ms,
    }
    started = time.time_ns() - call.latency_ms * 1_000_000
    with _active.tracer.start_as_current_span(
        "llm.call", kind=SpanKind.CLIENT, attributes=attributes, start_time=started
    ) as current:
        if call.outcome is not CallOutcome.OK:
            current.set_status(Status(StatusCode.ERROR, call.outcome.value))
        yield
