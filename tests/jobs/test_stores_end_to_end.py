"""A short end-to-end on the derived stores a deployment runs: ingestion and sync through a real worker, recall,
reconcile and forget-user through the real command line, and the race that leaves orphans.

Two deployments, the same steps: the embedded stores (the graph in Postgres, pgvector), always; Neo4j and Weaviate
when NEO4J_URI and WEAVIATE_URL are both set (the hosted workflow, .github/workflows/stores.yml, starts both as
service containers), skipped with the reason otherwise. The LLM is the scripted server; embeddings are the local
model. Ids are fresh uuids and both users are removed at the end, so a shared server keeps nothing of this test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from agents.llm import CallContext
from agents.scripted_llm import ScriptedLLMServer, load_sample_answers
from core.errors import PermanentError
from core.recall import RecallWeights
from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, GRAPH, VECTOR
from jobs.runtime.resources import WorkerResources
from settings import Settings
from store import outbox
from store.graph.base import GraphWriteRefused
from store.recall import Query, recall
from store.reconcile import Orphans, find_orphans, remove_orphans
from store.sync import graph_batch, user_refs, vector_changes
from store.vector.base import VectorItem
from tests.cli.test_stores_cli import ran
from tests.jobs.conftest import BurstRunner, cli_env
from tests.jobs.test_sync_job import ingested_user

SERVER_VARIABLES = ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "WEAVIATE_URL", "WEAVIATE_API_KEY")


@pytest.fixture(params=["embedded", pytest.param("servers", marks=[pytest.mark.neo4j, pytest.mark.weaviate])])
def servers(request: pytest.FixtureRequest) -> dict[str, str]:
    """The deployment's store variables: empty ones for the embedded stores (so an exported NEO4J_URI does not
    leak in), the environment's for Neo4j and Weaviate."""
    if request.param == "embedded":
        return {name: "" for name in SERVER_VARIABLES}
    missing = [name for name in ("NEO4J_URI", "WEAVIATE_URL") if not os.environ.get(name)]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not set: the end-to-end on Neo4j and Weaviate runs where both servers do "
            "(.github/workflows/stores.yml, or docs/operations.md's compose recipe)"
        )
    return {name: os.environ.get(name, "") for name in SERVER_VARIABLES}


pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers())


@pytest.fixture
def settings(settings: Settings, llm_server: ScriptedLLMServer, servers: dict[str, str]) -> Settings:
    """The worker's settings: the scripted LLM, and the deployment's stores."""

    def secret(name: str) -> SecretStr | None:
        return SecretStr(servers[name]) if servers[name] else None

    return settings.model_copy(
        update={
            "openai_base_url": llm_server.base_url,
            "openai_api_key": SecretStr("k"),
            "neo4j_uri": servers["NEO4J_URI"] or None,
            "neo4j_user": servers["NEO4J_USER"] or "neo4j",
            "neo4j_password": secret("NEO4J_PASSWORD"),
            "weaviate_url": servers["WEAVIATE_URL"] or None,
            "weaviate_api_key": secret("WEAVIATE_API_KEY"),
        }
    )


@pytest.fixture
async def resources(
    settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[WorkerResources]:
    """The stores and the embedder as a worker opens them."""
    opened = WorkerResources(settings, pool, redis_client, "e2e:1")
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_ingestion_sync_recall_reconcile_and_forget_user(
    servers: dict[str, str],
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    resources: WorkerResources,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    on_servers = bool(servers["NEO4J_URI"])
    env = cli_env(database_url, redis_url, tmp_path, **servers)
    graph, vector, embedder = await resources.get(GRAPH), await resources.get(VECTOR), await resources.get(EMBEDDER)
    assert (graph.backend, vector.backend) == (("neo4j", "weaviate") if on_servers else ("postgres", "pgvector"))
    ana = await ingested_user(pool, redis_client, run_burst, llm_server)  # ingestion, then the dispatchers
    bo = await ingested_user(pool, redis_client, run_burst, llm_server)
    try:
        # sync: the worker's dispatchers applied every outbox row to both stores
        assert [b.rows for b in await outbox.backlog(pool)] == [0, 0]
        units = await pool.fetchval("SELECT count(*) FROM memory_units WHERE user_id = $1", ana)
        assert units and (await graph.counts(ana)).nodes[NodeLabel.MEMORY_UNIT] == units
        assert sum((await vector.counts(ana)).values()) >= units

        # recall: vector hits widened through the graph, only Ana's
        [query] = await embedder.embed(["my running race"], context=CallContext(ana, "e2e"))
        found = await recall(pool, vector, ana, [Query("the query", query)], weights=RecallWeights(), graph=graph)
        mine = {r["muid"] for r in await pool.fetch("SELECT muid FROM memory_units WHERE user_id = $1", ana)}
        assert found and {item.entity_id for item in found if item.label is NodeLabel.MEMORY_UNIT} <= mine
        assert any(item.why.startswith("related to") for item in found)  # a graph neighbour

        # reconcile: the stores match Postgres
        report = ran("reconcile", "--user", ana, "--json", env=env)
        assert report["drift_left"] == 0 and [entry["store"] for entry in report["drift"]] == ["graph", "vector"]
        assert all(entry["missing"] == entry["extra"] == entry["changed"] == 0 for entry in report["drift"])

        # a dispatcher that read Bo's rows just before forget-user applies them just after it
        refs = await user_refs(pool, bo)
        late_batch = await graph_batch(pool, graph, bo, refs)
        items = (await vector_changes(pool, bo, refs)).upserts
        vectors = await embedder.embed([item.embedding_text for item in items], context=CallContext(bo, "e2e"))
        late_items = [VectorItem(i, v, embedder.model_version) for i, v in zip(items, vectors, strict=True)]
        assert ran("forget-user", bo, "--yes", "--json", env=env)["left"] == 0
        if on_servers:  # nothing stops the late write: Neo4j makes the nodes again, Weaviate the tenant
            await graph.apply(bo, late_batch)
            await vector.upsert(late_items)
            for store in (graph, vector):
                found_orphans = await find_orphans(pool, store)
                assert bo in found_orphans.user_ids and ana not in found_orphans.user_ids
            scan = ran("reconcile", "--json", env=env, code=1)  # read-only: others' leftovers on a shared server
            assert scan["orphans"]["graph"]["users"] >= 1 and scan["orphans"]["vector"]["users"] >= 1
            for store in (graph, vector):  # repair only Bo: a shared server may hold other tests' users
                assert await remove_orphans(pool, store, Orphans(1, (bo,))) > 0
        else:  # the embedded stores' foreign keys refuse it
            with pytest.raises(GraphWriteRefused, match=r"no row in public\.users"):
                await graph.apply(bo, late_batch)
            with pytest.raises(PermanentError, match="no such user in Postgres"):
                await vector.upsert(late_items)
            assert ran("reconcile", "--json", env=env)["orphans"] == {
                store: {"users": 0, "examples": [], "removed": None, "left": 0, "refused": None}
                for store in ("graph", "vector")
            }
        assert bo not in await graph.held_users() and bo not in await vector.held_users()

        # forget-user: nothing of Ana's left anywhere
        done = ran("forget-user", ana, "--yes", "--json", env=env)
        assert done["left"] == 0 and done["before"]["graph"]["nodes"] > 0
        assert ana not in await graph.held_users() and ana not in await vector.held_users()
    finally:  # on a shared server, whatever a failed step left
        for user_id in (ana, bo):
            await graph.delete_user(user_id)
            await vector.delete_user(user_id)
