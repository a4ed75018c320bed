"""The outbox reaches both derived stores through real workers: an ingestion's commit shows up in the graph and the
vector store (real local embeddings), a store that fails for a while delays only itself, and everything converges
after it recovers with nothing lost and nothing written twice."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

import jobs.ingestion
import jobs.sync
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from core.vocabulary import NodeLabel
from jobs.ingestion import INGEST
from jobs.resources import EMBEDDER, VECTOR
from jobs.runtime.enqueue import enqueue
from jobs.runtime.resources import Resource, WorkerResources
from jobs.sync import SYNC_STORES
from settings import Settings
from store import outbox
from store.graph.base import GraphBatch, GraphStoreUnavailable
from store.graph.postgres import PostgresGraphStore
from store.repos import conversations, users
from store.vector.base import SourceEntityType
from store.vector.pgvector import PgVectorStore
from tests.jobs.conftest import BurstRunner
from tests.jobs.testjobs import replacing

pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers())


SAMPLE_ANSWER: dict[str, Any] = load_sample_answers()[0].answer


async def ingested_user(
    pool: asyncpg.Pool, redis: aioredis.Redis, run_burst: BurstRunner, llm: ScriptedLLMServer
) -> str:
    llm.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    user = await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex[:8]}@example.com", name="Ana")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    await conversations.add_message(pool, user.user_id, conversation.id, role="assistant", content="How was the run?")
    await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k, no stops!")
    assert (await enqueue(redis, pool, INGEST, {"conversation_id": conversation.id})).enqueued
    await run_burst()
    return user.user_id


async def truth(pool: asyncpg.Pool, user_id: str) -> tuple[set[str], set[str]]:
    units = {r["muid"] for r in await pool.fetch("SELECT muid FROM memory_units WHERE user_id = $1", user_id)}
    ideas = {r["concept_id"] for r in await pool.fetch("SELECT concept_id FROM concepts WHERE user_id = $1", user_id)}
    return units, ideas


async def test_an_ingestion_reaches_the_graph_and_the_vector_store(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    settings: Settings,
    llm_server: ScriptedLLMServer,
) -> None:
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    units, ideas = await truth(pool, user_id)
    assert units and ideas

    graph = PostgresGraphStore(pool)
    assert set(await graph.node_hashes(user_id, NodeLabel.MEMORY_UNIT)) == units
    assert set(await graph.node_hashes(user_id, NodeLabel.CONCEPT)) == ideas
    assert (await graph.counts(user_id)).nodes[NodeLabel.USER] == 1
    resources = WorkerResources(settings, pool, redis_client, "test:1")
    try:
        vector = await resources.get(VECTOR)
        counts = await vector.counts(user_id)
        assert counts[SourceEntityType.MEMORY_UNIT] == len(units) and counts[SourceEntityType.CONCEPT] == len(ideas)
        embedder = await resources.get(EMBEDDER)
        from agents.llm import CallContext

        [query] = await embedder.embed(["running ten kilometres"], context=CallContext(user_id, "test"))
        hits = await vector.search(user_id, query, limit=3)
        assert hits and hits[0].score > 0.3  # real embeddings: the run comes back for a paraphrase
    finally:
        await resources.aclose()
    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]


class FlakyGraph:
    """The real Postgres graph adapter, refusing every write while `down` is set (a Neo4j that is away)."""

    down = True
    attempts = 0
    failures_left = -1
    """When >= 0: fail this many more writes, then work (a short outage)."""

    def __init__(self, real: PostgresGraphStore) -> None:
        self._real = real
        self.backend = "flaky"

    async def apply(self, user_id: str, batch: GraphBatch) -> None:
        FlakyGraph.attempts += 1
        if FlakyGraph.failures_left > 0:
            FlakyGraph.failures_left -= 1
            raise GraphStoreUnavailable("graph store unreachable (injected)")
        if FlakyGraph.down and FlakyGraph.failures_left < 0:
            raise GraphStoreUnavailable("graph store unreachable (injected)")
        await self._real.apply(user_id, batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@asynccontextmanager
async def _open_flaky(resources: WorkerResources) -> AsyncIterator[Any]:
    yield FlakyGraph(PostgresGraphStore(resources.pool))


FLAKY = Resource("flaky-graph", _open_flaky)


async def test_a_graph_outage_delays_only_the_graph_and_converges_after_it(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    monkeypatch: pytest.MonkeyPatch,
    llm_server: ScriptedLLMServer,
) -> None:
    monkeypatch.setattr(jobs.sync, "GRAPH", FLAKY)
    monkeypatch.setattr(jobs.sync, "PROBE_WINDOW_S", 0.0)  # no tries of its own: the burst ends while it is away
    run_burst.jobs = replacing(run_burst.jobs, dataclasses.replace(SYNC_STORES, resources=(FLAKY, VECTOR, EMBEDDER)))
    FlakyGraph.down, FlakyGraph.attempts, FlakyGraph.failures_left = True, 0, -1

    first = await ingested_user(pool, redis_client, run_burst, llm_server)
    second = await ingested_user(
        pool, redis_client, run_burst, llm_server
    )  # ingestion keeps committing while the graph is away
    backlog = {b.store: b for b in await outbox.backlog(pool)}
    assert backlog["vector"].rows == 0 and not backlog["vector"].store_failing  # the vector store did not wait
    assert backlog["graph"].rows > 0 and backlog["graph"].failing > 0 and backlog["graph"].store_failing
    assert "injected" in (backlog["graph"].last_error or "")
    graph = PostgresGraphStore(pool)
    assert await graph.node_hashes(first, NodeLabel.MEMORY_UNIT) == {}

    FlakyGraph.down = False
    await outbox.retry_now(pool, "graph")  # what `run.py sync run` does: every waiting row is due now
    waiting = "SELECT count(*) FROM runtime.outbox WHERE store = 'graph' AND next_attempt_at > now()"
    assert await pool.fetchval(waiting) == 0  # (how many it moved depends on how much of the backoff has passed)
    assert (await enqueue(redis_client, pool, SYNC_STORES, {"store": "graph"})).enqueued
    await run_burst()

    assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]
    assert not (await outbox.store_state(pool, "graph")).failing
    for user_id in (first, second):
        units, ideas = await truth(pool, user_id)
        assert set(await graph.node_hashes(user_id, NodeLabel.MEMORY_UNIT)) == units
        assert set(await graph.node_hashes(user_id, NodeLabel.CONCEPT)) == ideas
        counts = await graph.counts(user_id)
        assert counts.nodes[NodeLabel.USER] == 1 and counts.nodes[NodeLabel.MEMORY_UNIT] == len(units)
    edges = await pool.fetchval(
        "SELECT count(*) FROM runtime.knowledge_edges WHERE user_id = ANY($1::text[]) AND NOT in_graph", [first, second]
    )
    assert edges == 0  # every relationship reached the graph, once (the edge table has one row per relationship)


async def test_a_store_is_told_to_delete_what_postgres_no_longer_has(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    settings: Settings,
    llm_server: ScriptedLLMServer,
) -> None:
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    units, _ = await truth(pool, user_id)
    gone = sorted(units)[0]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM memory_units WHERE muid = $1", gone)
        await outbox.record_changes(conn, user_id, [outbox.Change(NodeLabel.MEMORY_UNIT, gone)])
    for store in outbox.STORES:
        await enqueue(redis_client, pool, SYNC_STORES, {"store": store})
    await run_burst()

    assert gone not in await PostgresGraphStore(pool).node_hashes(user_id, NodeLabel.MEMORY_UNIT)
    resources = WorkerResources(settings, pool, redis_client, "test:1")
    try:
        vector = await resources.get(VECTOR)
        kept = await vector.fingerprints(user_id, SourceEntityType.MEMORY_UNIT)
        assert {key.source_entity_id for key in kept} == units - {gone}
    finally:
        await resources.aclose()


def test_the_vector_store_resource_is_the_pgvector_default(settings: Settings) -> None:
    assert PgVectorStore.backend == "pgvector" and settings.weaviate_url is None


async def test_a_concept_named_differently_is_recognised_by_similarity_and_relevant_ones_are_shown_first(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """The second conversation calls the coach "my coach Dani": no second person is created (the similarity rule,
    after sync), while "Coach Dina" (0.72) stays a person of her own; and the model was shown the user's concepts."""
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    before = {r["name"] for r in await pool.fetch("SELECT name FROM concepts WHERE user_id = $1", user_id)}
    assert "Coach Dani" in before

    renamed = [
        {**c, "name": "my coach Dani"} if c["name"] == "Coach Dani" else c for c in SAMPLE_ANSWER["concepts"]
    ] + [
        {"key": "c5", "name": "Coach Dina", "type": "person", "description": "Runs the club.", "existing_handle": None}
    ]
    answer = {**SAMPLE_ANSWER, "concepts": renamed}
    conversation = await conversations.create_conversation(pool, user_id, status="ended")
    await conversations.add_message(pool, user_id, conversation.id, role="user", content="Coach said keep it easy.")
    llm_server.enqueue(ScriptedReply.json(answer))
    await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
    await run_burst()

    after = sorted(r["name"] for r in await pool.fetch("SELECT name FROM concepts WHERE user_id = $1", user_id))
    assert after == sorted([*before, "Coach Dina"])
    prompt = llm_server.chat_requests[-1].message_text()
    assert "Coach Dani" in prompt and "Lisbon half marathon" in prompt  # existing concepts shown as handles


async def test_after_a_short_outage_the_dispatcher_comes_back_for_its_rows_by_itself(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    monkeypatch: pytest.MonkeyPatch,
    llm_server: ScriptedLLMServer,
) -> None:
    """Two failed writes, then the store answers: the retry the dispatcher scheduled for itself applies the rows,
    with no sweep and no new commit to wake it."""
    monkeypatch.setattr(jobs.sync, "GRAPH", FLAKY)
    monkeypatch.setattr(jobs.sync, "PROBE_BASE_S", 0.05)
    run_burst.jobs = replacing(run_burst.jobs, dataclasses.replace(SYNC_STORES, resources=(FLAKY, VECTOR, EMBEDDER)))
    FlakyGraph.down, FlakyGraph.attempts, FlakyGraph.failures_left = False, 0, 2

    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)

    assert FlakyGraph.attempts == 3 and [b.rows for b in await outbox.backlog(pool)] == [0, 0]
    units, _ = await truth(pool, user_id)
    assert set(await PostgresGraphStore(pool).node_hashes(user_id, NodeLabel.MEMORY_UNIT)) == units


async def test_a_user_with_more_concepts_than_places_is_shown_the_nearest_not_only_the_newest(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three places for concepts, three newer unrelated ones: a conversation about the coach still shows the model
    "Coach Dani", found by embedding; by recency alone it would not be there."""
    monkeypatch.setattr(jobs.ingestion, "RELEVANT_CONCEPTS", 3)
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    topics = ("Sourdough baking", "Tax return", "Balcony plants")
    for name in topics:
        await pool.execute(
            "INSERT INTO concepts (concept_id, user_id, name, type, last_updated_ts, created_at) "
            "VALUES ($1, $2, $3, 'topic', now() + interval '1 hour', now() + interval '1 hour')",
            str(uuid.uuid4()),
            user_id,
            name,
        )
    conversation = await conversations.create_conversation(pool, user_id, status="ended")
    await conversations.add_message(
        pool, user_id, conversation.id, role="user", content="My running coach Dani told me to slow down."
    )
    llm_server.enqueue(ScriptedReply.json(SAMPLE_ANSWER))
    await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
    await run_burst()

    prompt = llm_server.chat_requests[-1].message_text()
    # the three nearest fill the three places; by recency the model would have seen only the unrelated topics
    assert "Coach Dani" in prompt and not any(name in prompt for name in topics)


async def test_a_commit_while_a_dispatcher_runs_gets_a_follow_up(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, resources: WorkerResources
) -> None:
    """A dispatcher that is running may have made its last claim before this commit: follow_commit enqueues the
    store's other id; one that is queued to start now is enough, nothing more is enqueued."""
    import structlog

    from jobs.runtime.context import JobContext
    from jobs.runtime.keys import in_progress_key, job_key
    from jobs.sync import follow_commit

    ctx = JobContext(
        settings=resources.settings,
        pool=pool,
        redis=redis_client,
        job_id="ingest:x",
        job_name="ingest",
        attempt=1,
        log=structlog.get_logger(),
        resources=resources,
    )
    await enqueue(redis_client, pool, SYNC_STORES, {"store": "graph"})  # queued, due now: enough
    await redis_client.set(job_key("sync:vector"), b"{}")  # running: started before the commit
    await redis_client.set(in_progress_key("sync:vector"), b"1")
    await follow_commit(ctx)
    queued = {r["job_id"] for r in await pool.fetch("SELECT job_id FROM runtime.job_runs WHERE state = 'queued'")}
    assert queued == {"sync:graph", "sync:vector:retry"}
