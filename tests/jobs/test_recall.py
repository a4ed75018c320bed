"""Recall on what a real worker ingested and synced: vector hits widened by the graph, explained, Postgres-checked,
never another user's; and the `recall` command on top of it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from agents.llm import CallContext
from agents.scripted_llm import ScriptedLLMServer, load_sample_answers
from core.recall import RecallWeights
from core.vocabulary import NodeLabel
from jobs.resources import EMBEDDER, GRAPH, VECTOR
from jobs.runtime.resources import WorkerResources
from settings import Settings
from store.recall import Query, recall
from tests.cli.runner import run_cli
from tests.jobs.conftest import BurstRunner, cli_env
from tests.jobs.test_sync_job import ingested_user


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(keyed_answers=load_sample_answers()) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, llm_server: ScriptedLLMServer) -> Settings:
    """The worker's settings, talking to the scripted LLM."""
    return settings.model_copy(update={"openai_base_url": llm_server.base_url, "openai_api_key": SecretStr("k")})


@pytest.fixture
async def resources(
    settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[WorkerResources]:
    opened = WorkerResources(settings, pool, redis_client, "test:1")
    try:
        yield opened
    finally:
        await opened.aclose()


async def _query(resources: WorkerResources, user_id: str, text: str) -> list[float]:
    embedder = await resources.get(EMBEDDER)
    [vector] = await embedder.embed([text], context=CallContext(user_id, "test"))
    return vector


async def test_recall_finds_the_memory_explains_why_and_widens_through_the_graph(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    resources: WorkerResources,
) -> None:
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    other = await ingested_user(pool, redis_client, run_burst, llm_server)  # the same memories, another user
    graph, vector = await resources.get(GRAPH), await resources.get(VECTOR)

    query = [Query("the query", await _query(resources, user_id, "my running race"))]
    found = await recall(pool, vector, user_id, query, weights=RecallWeights(), graph=graph, limit=10)
    assert found and found[0].score >= found[-1].score
    assert {item.label for item in found} == {NodeLabel.MEMORY_UNIT, NodeLabel.CONCEPT}
    assert any(item.why.startswith("similar to the query") for item in found)
    assert any(item.why.startswith("related to") for item in found)  # a graph neighbour the vector did not rank
    mine = {r["muid"] for r in await pool.fetch("SELECT muid FROM memory_units WHERE user_id = $1", user_id)}
    theirs = {r["muid"] for r in await pool.fetch("SELECT muid FROM memory_units WHERE user_id = $1", other)}
    recalled = {item.entity_id for item in found if item.label is NodeLabel.MEMORY_UNIT}
    assert recalled <= mine and not recalled & theirs

    gone = found[0]
    table = "memory_units" if gone.label is NodeLabel.MEMORY_UNIT else "concepts"
    key = "muid" if gone.label is NodeLabel.MEMORY_UNIT else "concept_id"
    await pool.execute(f"DELETE FROM {table} WHERE {key} = $1", gone.entity_id)  # not synced yet
    again = await recall(pool, vector, user_id, query, weights=RecallWeights(), graph=graph)
    assert gone.entity_id not in {item.entity_id for item in again}  # Postgres has the last word


async def test_the_recall_command(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    env = cli_env(database_url, redis_url, tmp_path)
    shown = run_cli("recall", "--user", user_id, "--json", "--limit", "3", "running ten kilometres", env=env)
    assert shown.returncode == 0, shown.stderr
    items = json.loads(shown.stdout)
    assert 1 <= len(items) <= 3 and {"label", "entity_id", "title", "score", "why"} <= set(items[0])
    unknown = run_cli("recall", "--user", "nobody", "x", env=env)
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr
    blank = run_cli("recall", "--user", user_id, "  ", env=env)
    assert blank.returncode == 2 and "non-empty TEXT" in blank.stderr
