"""Recall on what a real worker ingested and synced: vector hits widened by the graph, explained, Postgres-checked,
never another user's; and the `recall` command on top of it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

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

pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers())


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


async def test_recall_ranks_by_the_weighted_components_read_from_the_rows(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    resources: WorkerResources,
) -> None:
    """The same hits, ranked three ways: the weights decide, and recency and importance come from Postgres (a memory
    made old and important in its row moves up under importance, down under recency)."""
    user_id = await ingested_user(pool, redis_client, run_burst, llm_server)
    vector = await resources.get(VECTOR)
    query = [Query("the query", await _query(resources, user_id, "my running race"))]
    units = (NodeLabel.MEMORY_UNIT,)
    found = await recall(pool, vector, user_id, query, weights=RecallWeights(), labels=units, limit=10)
    assert len(found) >= 2
    moved = found[-1]
    await pool.execute(
        "UPDATE memory_units SET importance_score = 10, last_modified_ts = last_modified_ts - interval '400 days' "
        "WHERE user_id = $1 AND muid = $2",
        user_id,
        moved.entity_id,
    )

    def ranked(weights: RecallWeights) -> Any:
        return recall(pool, vector, user_id, query, weights=weights, labels=units, limit=10)

    by_importance = await ranked(RecallWeights(0, 0, 1))
    assert by_importance[0].entity_id == moved.entity_id and by_importance[0].carried_by == "importance"
    assert by_importance[0].components["importance"] == 1.0
    by_recency = await ranked(RecallWeights(0, 1, 0))
    assert by_recency[-1].entity_id == moved.entity_id and by_recency[-1].components["recency"] < 0.01
    by_similarity = await ranked(RecallWeights(1, 0, 0))
    scores = [item.components["similarity"] for item in by_similarity]
    assert scores == sorted(scores, reverse=True) and all(item.carried_by == "similarity" for item in by_similarity)


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
    assert 1 <= len(items) <= 3 and {"label", "entity_id", "title", "score", "why", "carried_by"} <= set(items[0])
    assert set(items[0]["components"]) == {"similarity", "recency", "importance"}
    assert f"carried by {items[0]['carried_by']}" in items[0]["why"]
    table = run_cli("recall", "--user", user_id, "--limit", "3", "running ten kilometres", env=env)
    assert table.returncode == 0 and "carried by" in table.stdout, table.stderr
    unknown = run_cli("recall", "--user", "nobody", "x", env=env)
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr
    blank = run_cli("recall", "--user", user_id, "  ", env=env)
    assert blank.returncode == 2 and "non-empty TEXT" in blank.stderr
