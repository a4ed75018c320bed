"""Pins the arq internals jobs/runtime/arq_seam.py relies on, so an arq upgrade fails here, loudly, in one place.

Each check names what Orrery does with the thing; when one fails, read arq's changelog for it and adapt the seam.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from importlib.metadata import version

import arq.constants
import arq.jobs
import arq.worker
import pytest

from jobs.runtime import arq_seam, keys, wire


def test_the_arq_version_is_the_one_the_seam_was_written_for() -> None:
    assert version("arq").startswith(arq_seam.ARQ_VERSION + "."), "re-check every pin below, then bump ARQ_VERSION"


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("_poll_iteration", ["self"]),  # replaced: the one-round-trip claim and outage pause
        ("_release_sem_dec_counter_on_complete", ["self"]),  # extended: wakes a poll waiting for a free slot
        ("_cancel_aborted_jobs", ["self"]),  # called from our poll iteration
        ("_jobs_started", ["self"]),  # burst accounting in our poll iteration
        ("run_job", ["self", "job_id", "score"]),  # what our claim hands each claimed job to
        ("heart_beat", ["self"]),  # health key and cron turn, called from our poll iteration
        ("record_health", ["self"]),  # replaced: the health line leads with the StoreWatch status
        ("finish_failed_job", ["self", "job_id", "result_data"]),  # extended: a NotRunnable dead letter first
        ("handle_sig", ["self", "signum"]),  # how run_workers stops each worker
        ("close", ["self"]),
        ("main", ["self"]),  # replaced: our own poll loop
    ],
)
def test_worker_methods_the_seam_overrides_or_calls(method: str, parameters: list[str]) -> None:
    function = getattr(arq.worker.Worker, method, None)
    assert function is not None, f"arq.worker.Worker.{method} is gone"
    assert list(inspect.signature(function).parameters) == parameters
    plain = {"_release_sem_dec_counter_on_complete", "_jobs_started", "handle_sig"}
    assert asyncio.iscoroutinefunction(function) == (method not in plain)


def test_worker_attributes_the_seam_reads_or_sets() -> None:
    worker = arq.worker.Worker(functions=[arq.worker.func(_noop, name="noop")], handle_signals=False, burst=True)
    attributes = [
        "sem",
        "job_counter",
        "tasks",
        "allow_pick_jobs",
        "allow_abort_jobs",
        "max_burst_jobs",
        "max_jobs",
        "_last_health_check",
        "health_check_interval",
        "health_check_key",
        "poll_delay_s",
        "in_progress_timeout_s",
        "expires_extra_ms",
        "jobs_complete",
        "jobs_failed",
        "jobs_retried",
        "_pool",
        "ctx",
        "queue_name",
        "job_serializer",
        "job_deserializer",
        "redis_settings",
    ]
    for attribute in attributes:
        assert hasattr(worker, attribute), f"arq.worker.Worker no longer sets {attribute}"
    assert isinstance(worker.sem, asyncio.Semaphore)
    # the lease: arq must still take the in-progress key's lifetime from this attribute when it runs a job
    assert "in_progress_timeout_s" in inspect.getsource(arq.worker.Worker)


def test_key_formats_the_lua_scripts_write() -> None:
    assert (arq.constants.job_key_prefix, arq.constants.in_progress_key_prefix, arq.constants.retry_key_prefix) == (
        "arq:job:",
        "arq:in-progress:",
        "arq:retry:",
    )
    assert arq.constants.health_check_key_suffix == ":health-check"
    assert keys.job_key("j1") == "arq:job:j1" and keys.in_progress_key("j1") == "arq:in-progress:j1"
    assert keys.retry_key("j1") == "arq:retry:j1"
    # the retry counter: arq's run_job increments arq:retry:{id}, which is the attempt number the runtime reads
    assert "retry_key_prefix" in inspect.getsource(arq.worker.Worker.run_job)


def test_arq_reads_the_records_our_producers_write() -> None:
    record = wire.job_record("ingest", {"conversation_id": "c1"}, enqueue_time_ms=1_700_000_000_000)
    assert set(json.loads(record)) == {"t", "f", "a", "k", "et"}
    name, args, kwargs, tries, enqueued_ms = arq.jobs.deserialize_job_raw(record, deserializer=wire.deserialize)
    assert (name, list(args), kwargs, enqueued_ms) == ("ingest", [], {"conversation_id": "c1"}, 1_700_000_000_000)
    assert tries is None  # "t": arq's own try count, which the runtime leaves to the retry key


def test_function_and_retry_keep_their_parameters() -> None:
    assert {"name", "keep_result", "timeout", "max_tries"} <= set(inspect.signature(arq.worker.func).parameters)
    assert list(inspect.signature(arq.worker.Retry.__init__).parameters) == ["self", "defer"]
    made = arq_seam.function(_noop, name="noop", timeout_s=5, max_tries=3)
    assert (made.name, made.timeout_s, made.keep_result_s, made.max_tries) == ("noop", 5, 0, 3)


async def _noop(ctx: dict[str, object]) -> None:
    return None
