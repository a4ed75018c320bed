"""Concept deduplication never depends on whether the embedder answered in time (issue 23 item 1): with the
embeddings endpoint down, an ingestion that has new concepts to compare waits for it, then gives the job back to the
runtime's retry; nothing is written without the similarity rule, and once the endpoint answers the retry compares
the new names (before, the rule was skipped with a warning and the conversation written without it)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

import jobs.ingestion_recall
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import Settings
from store import ledger
from store.repos import conversations, users
from tests.embeddings_server import EmbeddingsServer
from tests.jobs.conftest import wait_until
from tests.jobs.testjobs import TEST_JOBS, replacing

importlib.import_module("agents.embeddings")  # imported with the test, not first inside a job (see test_sync_state)

ANSWER: dict[str, Any] = load_sample_answers()[0].answer


@pytest.fixture
def endpoint() -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer(dimension=16) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, llm_server: ScriptedLLMServer, endpoint: EmbeddingsServer) -> Settings:
    return settings.model_copy(
        update={
            "openai_base_url": llm_server.base_url,
            "openai_api_key": SecretStr("k"),
            "embeddings_base_url": endpoint.base_url,
            "embeddings_model": "embed-small",
            "embeddings_dimension": 16,
            "llm_max_retries": 0,
            "job_lease_s": 15,
        }
    )


async def conversation(pool: asyncpg.Pool, user_id: str) -> str:
    made = await conversations.create_conversation(pool, user_id, status="ended")
    await conversations.add_message(pool, user_id, made.id, role="user", content="Coach said keep it easy.")
    return made.id


async def test_an_embeddings_outage_delays_deduplication_and_never_skips_it(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    settings: Settings,
    database_url: str,
    redis_url: str,
    llm_server: ScriptedLLMServer,
    endpoint: EmbeddingsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs.ingestion_recall, "EMBEDDER_PATIENCE_S", 0.5)
    monkeypatch.setattr(jobs.ingestion_recall, "PATIENCE_BASE_S", 0.05)
    table = replacing(TEST_JOBS, dataclasses.replace(INGEST, backoff_s=0.2))
    options = WorkerOptions(queues=("interactive", "batch"), concurrency=4, burst=True)
    user = await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex[:8]}@example.com")

    llm_server.enqueue(ScriptedReply.json(ANSWER))  # the first conversation: concepts, and their name vectors
    await enqueue(redis_client, pool, INGEST, {"conversation_id": await conversation(pool, user.user_id)})
    await asyncio.wait_for(run_workers(settings, database_url, redis_url, options, table), 60)
    assert await pool.fetchval("SELECT count(*) FROM runtime.concept_name_vectors WHERE user_id = $1", user.user_id)

    renamed = {**ANSWER, "concepts": [{**c, "name": f"my {c['name']}"} for c in ANSWER["concepts"]]}
    llm_server.enqueue(*[ScriptedReply.json(renamed)] * 5)
    second = await conversation(pool, user.user_id)
    job = await enqueue(redis_client, pool, INGEST, {"conversation_id": second})
    endpoint.down = True
    endpoint.requests.clear()
    worker = asyncio.create_task(run_workers(settings, database_url, redis_url, options, table))

    async def retried() -> bool:
        run = await ledger.latest_run(pool, job.job_id)
        return (
            run is not None and run.attempt >= 1 and "concept deduplication needs the embeddings" in (run.error or "")
        )

    await wait_until(retried, timeout=60)
    written = await pool.fetchrow("SELECT status FROM conversations WHERE id = $1", second)
    units = await pool.fetchval("SELECT count(*) FROM memory_units WHERE source_conversation_id = $1", second)
    assert written is not None and written["status"] != "processed" and units == 0  # nothing without the rule
    asked = [text for request in endpoint.requests for text in request["input"]]
    assert "my Coach Dani (person)" in asked  # the new names were what it tried to embed

    endpoint.down = False
    await asyncio.wait_for(worker, 60)
    run = await ledger.latest_run(pool, job.job_id)
    assert run is not None and run.state == "succeeded" and run.attempt >= 2
    assert (await pool.fetchval("SELECT status FROM conversations WHERE id = $1", second)) == "processed"
    assert await pool.fetchval("SELECT count(*) FROM memory_units WHERE source_conversation_id = $1", second) > 0
    assert len(llm_server.chat_requests) == 1 + run.attempt  # each try asked the model once (bounded by max_tries)
