"""The cycle dispatcher and the insight job through a real in-process worker, the real openai client and the
scripted OpenAI-compatible server answering by prompt name (agents/samples/*.json) or from a scripted queue.

The sample user (store/samples) is seeded and ingested first, as in production; then insight runs on what
ingestion wrote. Most tests run the catalog without the rest of the chain (the insight job then logs that the chain
stops), so they see insight alone; one runs the whole chain.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_all_sample_answers
from clients.contract import NextConversationContextPackage
from core.cycle import Cycle
from core.insight import GENERATED_BY, summary_artifact_id
from jobs.catalog import JOBS
from jobs.cycle import STEPS, CycleArgs
from jobs.insight import INSIGHT
from jobs.maintenance import end_and_enqueue_ingestion
from jobs.runtime.context import JobContext
from jobs.runtime.enqueue import enqueue
from jobs.runtime.registry import JobTable
from jobs.runtime.resources import WorkerResources
from store import ledger
from store.cycles import cycles_near_due
from store.llm_calls import list_llm_calls
from store.repos import cards, communities, concepts, derived_artifacts, users
from store.repos._base import to_db
from store.samples.loader import seed_sample_user
from tests.agents.test_insight import insight_answer
from tests.jobs.conftest import BurstRunner
from tests.store import testrows

INSIGHT_ONLY = JobTable(spec for spec in JOBS.all() if spec.name not in ("proactive_prompts", "cycle_report"))
"""The catalog without the chain after insight: the insight job's follow-up is not known, so the chain stops."""


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers(), llm_timeout_s=2.0, llm_max_retries=0)


@pytest.fixture
def insight_only(run_burst: BurstRunner) -> BurstRunner:
    run_burst.jobs = INSIGHT_ONLY
    return run_burst


async def ingested_sample_user(pool: asyncpg.Pool, redis: aioredis.Redis, run_burst: BurstRunner) -> str:
    """The sample user, their conversations ended and ingested with the shipped sample answers."""
    seeded = await seed_sample_user(pool, redis, media_dir=run_burst.settings.resolved_media_root)
    await end_and_enqueue_ingestion(pool, redis, timeout_minutes=0.001, limit=100)
    await run_burst()
    return seeded.user_id


async def trigger(redis: aioredis.Redis, pool: asyncpg.Pool, user_id: str, **extra: Any) -> str:
    result = await enqueue(redis, pool, INSIGHT, {"user_id": user_id, **extra})
    return result.job_id


async def insight_rows(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    """Everything insight writes, as comparable values (what a rerun must leave exactly as it was)."""
    user = await users.get_user(pool, user_id)
    assert user is not None
    return {
        "artifacts": sorted(
            (a.artifact_id, a.artifact_type, a.title)
            for a in await derived_artifacts.list_derived_artifacts(pool, user_id)
        ),
        "cards": sorted((c.source_entity_type, c.source_entity_id) for c in await cards.list_cards(pool, user_id)),
        "growth": sorted(
            (g.event_id, g.entity_id, g.dim_key) for g in await testrows.list_growth_events(pool, user_id)
        ),
        "communities": sorted(
            (c.community_id, tuple(c.core_concept_ids)) for c in await communities.list_communities(pool, user_id)
        ),
        "concepts": sorted(
            (c.concept_id, c.status, c.merged_into_concept_id, c.community_id)
            for c in await concepts.list_concepts(pool, user_id, status=None)
        ),
        "profile": {k: v for k, v in (user.memory_profile or {}).items() if k != "updated_at"},
    }


async def test_the_sample_user_cycle_is_understood_once(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, insight_only: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id = await ingested_sample_user(pool, redis_client, insight_only)
    ingestion_calls = len(llm_server.chat_requests)
    before = {c.concept_id: c for c in await concepts.list_concepts(pool, user_id)}

    job_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded", run
    assert run.result is not None and run.result["outcome"] == "written" and run.result["llm_calls"] == 1
    assert run.result["next_job_id"] is None  # proactive_prompts is not in this worker's table: the chain stops
    (request,) = llm_server.chat_requests[ingestion_calls:]
    assert request.prompt_name == "insight"
    assert all(concept_id not in request.message_text() for concept_id in before)  # handles only

    user = await users.get_user(pool, user_id)
    assert user is not None and user.memory_profile is not None and user.knowledge_graph_schema is not None
    assert user.memory_profile["source"] == GENERATED_BY and user.memory_profile["summary"]
    package = user.next_conversation_context_package
    assert package is not None
    NextConversationContextPackage.model_validate(package)  # only the documented keys (no "source", "cycle_start")
    artifacts = await derived_artifacts.list_derived_artifacts(pool, user_id)
    # the seed's types; the model's finer kind is in content_data, a breakthrough (a growth milestone) is a trophy,
    # the story of the goal she reached (talking with her neighbours in Portuguese) a goal_achievement_story
    kinds = {(a.content_data or {}).get("insight_kind"): a.artifact_type for a in artifacts}
    assert kinds == {
        "insight_summary": "insight_summary",
        "pattern": "insight_summary",
        "tension": "insight_summary",
        "breakthrough": "trophy",
        "goal_achievement_story": "goal_achievement_story",
    }
    card_types = {c.source_entity_id: c.card_type for c in await cards.list_cards(pool, user_id)}
    assert all(card_types[a.artifact_id] == a.artifact_type for a in artifacts)
    summary = next(a for a in artifacts if (a.content_data or {}).get("insight_kind") == "insight_summary")
    assert summary.artifact_id == summary_artifact_id(Cycle.of(user_id, user.created_at))
    assert all(a.generated_by_agent == GENERATED_BY for a in artifacts)
    assert summary.content_data is not None and summary.content_data["source_memory_unit_ids"]
    assert summary.source_memory_unit_id == summary.content_data["source_memory_unit_ids"][0]
    carded = {c.source_entity_id for c in await cards.list_cards(pool, user_id)}
    assert {a.artifact_id for a in artifacts} <= carded
    found = await communities.list_communities(pool, user_id)
    assert found and all(c.detection_method and c.detection_method.startswith("louvain") for c in found)
    members = {c.concept_id: c.community_id for c in await concepts.list_concepts(pool, user_id)}
    assert {cid for c in found for cid in c.core_concept_ids} == {k for k, v in members.items() if v}
    # the write's outbox rows were applied by the sync the job started after its commit: the graph holds them
    synced = await pool.fetch(
        "SELECT DISTINCT label FROM runtime.graph_nodes WHERE user_id = $1 AND node_key = ANY($2::text[])",
        user_id,
        [user_id, summary.artifact_id, *(c.community_id for c in found)],
    )
    assert {r["label"] for r in synced} == {"User", "DerivedArtifact", "Community"}
    assert await pool.fetchval("SELECT count(*) FROM runtime.outbox WHERE user_id = $1", user_id) == 0

    # the sample answer merges "Morning runs" into "Running": everything that pointed at it now points at Running
    by_name = {c.name: c for c in await concepts.list_concepts(pool, user_id, status=None)}
    running, morning = by_name["Running"], by_name["Morning runs"]
    assert (morning.status, morning.merged_into_concept_id, running.status) == ("merged", running.concept_id, "active")
    assert "morning runs" in running.aliases
    edges = await testrows.list_edges(pool, user_id)
    assert not [e for e in edges if morning.concept_id in (e.source_id, e.target_id)]
    assert morning.concept_id not in carded and running.concept_id in carded
    assert {c.name for c in found} == {
        "Going freelance",
        "Half-marathon training",
        "Calm under pressure",
        "Family and Dad's care",
        "Portuguese in Lisbon",
    }

    # a duplicate delivery or a manual re-trigger: nothing new, and no LLM call
    rows = await insight_rows(pool, user_id)
    job_id = await trigger(redis_client, pool, user_id)
    await insight_only()
    rerun = await ledger.latest_run(pool, job_id)
    assert rerun is not None and rerun.result is not None and rerun.result["outcome"] == "already_written"
    assert len(llm_server.chat_requests) == ingestion_calls + 1
    assert await insight_rows(pool, user_id) == rows


async def test_a_handle_not_shown_is_repaired_once_then_dead_and_the_cycle_goes_on(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    insight_only: BurstRunner,
    llm_server: ScriptedLLMServer,
    resources: WorkerResources,
) -> None:
    user_id = await ingested_sample_user(pool, redis_client, insight_only)
    rows = await insight_rows(pool, user_id)
    bad = insight_answer(
        artifacts=[{"artifact_type": "insight_summary", "title": "t", "narrative": "n", "sources": ["m999"]}]
    )
    llm_server.enqueue(ScriptedReply.json(bad), ScriptedReply.json(bad))
    job_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "dead" and run.attempt == 1 and run.error_class == "PermanentError"
    assert run.error is not None and "'m999' was not shown to you" in run.error
    calls = await list_llm_calls(pool, user_id)
    assert [(c.call.purpose.value, c.call.outcome.value) for c in calls if c.call.agent == "insight"] == [
        ("answer", "schema_invalid"),
        ("repair", "schema_invalid"),
    ]
    assert await insight_rows(pool, user_id) == rows  # nothing written

    # the dead hook, with the whole catalog: the chain goes on without this cycle's insight
    ctx = JobContext(
        settings=resources.settings,
        pool=pool,
        redis=redis_client,
        job_id=job_id,
        job_name="insight",
        attempt=1,
        log=structlog.get_logger("test"),
        resources=resources,
    )
    assert INSIGHT.on_dead is not None
    await INSIGHT.on_dead(ctx, CycleArgs(user_id=user_id), "the answer named m999")
    user = await users.get_user(pool, user_id)
    assert user is not None
    follow = await ledger.latest_run(pool, Cycle.of(user_id, user.created_at).job_id("proactive_prompts"))
    assert follow is not None and follow.state == "queued"


async def make_user(pool: asyncpg.Pool, *, created_days_ago: float, last_cycle_days_ago: float | None = None) -> str:
    user_id = str(uuid.uuid4())
    await users.create_user(pool, user_id, email=f"{user_id}@example.org")
    now = datetime.now(UTC).replace(tzinfo=None)
    await pool.execute(
        "UPDATE users SET created_at = $2, last_cycle_started_at = $3 WHERE user_id = $1",
        user_id,
        now - timedelta(days=created_days_ago),
        None if last_cycle_days_ago is None else now - timedelta(days=last_cycle_days_ago),
    )
    return user_id


async def test_an_empty_cycle_makes_no_call_and_writes_nothing(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, insight_only: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id = await make_user(pool, created_days_ago=8)
    job_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, job_id)
    user = await users.get_user(pool, user_id)
    assert run is not None and run.state == "succeeded" and user is not None
    assert run.result == {
        "cycle": Cycle.of(user_id, user.created_at).stamp,
        "outcome": "empty_cycle",
        "conversations": 0,
        "next_job_id": None,
    }
    assert llm_server.chat_requests == []
    assert await derived_artifacts.list_derived_artifacts(pool, user_id) == []
    assert user.memory_profile is None


async def test_a_cycle_that_is_not_current_is_skipped(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, insight_only: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    user_id = await make_user(pool, created_days_ago=20, last_cycle_days_ago=3)
    job_id = await trigger(
        redis_client, pool, user_id, cycle_start=(datetime.now(UTC) - timedelta(days=10)).isoformat()
    )
    await insight_only()
    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.result is not None and run.result["outcome"] == "not_current_cycle"
    assert "next_job_id" not in run.result and llm_server.chat_requests == []


async def test_the_chain_closes_an_empty_cycle_without_an_llm_call(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """The whole catalog: insight (empty: no call) → proactive_prompts → cycle_report (resets the cycle) →
    projection, each once, named after the cycle."""
    user_id = await make_user(pool, created_days_ago=8)
    user = await users.get_user(pool, user_id)
    assert user is not None
    cycle = Cycle.of(user_id, user.created_at)
    await trigger(redis_client, pool, user_id)
    await run_burst()

    states = await ledger.latest_states(pool, [cycle.job_id(step) for step in STEPS])
    assert set(states.values()) == {"succeeded"} and len(states) == 4, states
    assert llm_server.chat_requests == []
    after = await users.get_user(pool, user_id)
    assert after is not None and after.last_cycle_started_at is not None
    assert after.last_cycle_started_at > user.created_at  # a new cycle started
    assert await cycles_near_due(pool, now=datetime.now(UTC), length_days=7, limit=10) == []


def section(text: str, tag: str) -> str:
    """What a rendered prompt's data section <tag> holds (the instructions name the tags first: the last one)."""
    return text.rsplit(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]


async def test_insight_is_grounded_in_a_memory_from_before_the_cycle(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, insight_only: BurstRunner, llm_server: ScriptedLLMServer
) -> None:
    """Recall over the whole history: a memory unit from before the cycle (outside the window insight compiles) that
    relates to the cycle's themes reaches the request as an earlier memory, with why it came back, and the sample
    answer still applies."""
    user_id = await ingested_sample_user(pool, redis_client, insight_only)
    user = await users.get_user(pool, user_id)
    assert user is not None
    old = await pool.fetchrow(
        "SELECT muid, title FROM memory_units WHERE user_id = $1 AND (title ILIKE '%run%' OR content ILIKE '%run%') "
        "ORDER BY importance_score DESC, muid LIMIT 1",
        user_id,
    )
    assert old is not None
    cycle_start = user.last_cycle_started_at or user.created_at
    await pool.execute(
        "UPDATE memory_units SET creation_ts = $3, ingestion_ts = $3 WHERE user_id = $1 AND muid = $2",
        user_id,
        old["muid"],
        to_db(cycle_start - timedelta(days=120)),
    )
    before = len(llm_server.chat_requests)

    job_id = await trigger(redis_client, pool, user_id)
    await insight_only()

    run = await ledger.latest_run(pool, job_id)
    assert run is not None and run.state == "succeeded" and run.result is not None, run
    assert run.result["outcome"] == "written"
    (request,) = llm_server.chat_requests[before:]
    text = request.message_text()
    assert old["title"] not in section(text, "memory_units")  # outside the cycle's window
    earlier = section(text, "earlier_memories")
    assert old["title"] in earlier and "recalled:" in earlier and "carried by" in earlier
    assert old["muid"] not in text  # a handle, never an id
