"""Round trips for the batch agents' tables and the web app's sessions: artifacts, prompts, communities,
interaction logs, graph projections and user sessions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from store.repos import (
    communities,
    concepts,
    derived_artifacts,
    graph_projections,
    memory_units,
    proactive_prompts,
    users,
)
from store.repos._base import NotFoundError

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> str:
    await users.create_user(pool, "u-1", email="a@example.org")
    await memory_units.insert_memory_unit(
        pool,
        "u-1",
        title="t",
        content="c",
        creation_ts=MOMENT,
        importance_score=5,
        sentiment_score=0,
        source_conversation_id=None,
        muid="mu-1",
    )
    for concept_id in ("k-1", "k-2"):
        await concepts.create_concept(
            pool, "u-1", name=concept_id, type="t", description=None, normalized_name=concept_id, concept_id=concept_id
        )
    return "u-1"


async def test_derived_artifacts_round_trip(pool: asyncpg.Pool, user: str) -> None:
    artifact = await derived_artifacts.create_derived_artifact(
        pool,
        user,
        artifact_type="insight_summary",
        title="Patience",
        content_narrative="You slowed down.",
        content_data={"score": 3},
        source_memory_unit_id="mu-1",
        source_concept_id="k-1",
        generated_by_agent="InsightAgent",
        artifact_id="a-1",
    )
    assert (artifact.artifact_id, artifact.artifact_type, artifact.title, artifact.content_narrative) == (
        "a-1",
        "insight_summary",
        "Patience",
        "You slowed down.",
    )
    assert (artifact.content_data, artifact.source_memory_unit_id, artifact.source_concept_id) == (
        {"score": 3},
        "mu-1",
        "k-1",
    )
    assert artifact.generated_by_agent == "InsightAgent" and artifact.created_at.tzinfo is UTC
    report = await derived_artifacts.create_derived_artifact(pool, user, artifact_type="cycle_report", title="W1")
    assert await derived_artifacts.get_derived_artifact(pool, user, "a-1") == artifact
    listed = await derived_artifacts.list_derived_artifacts(pool, user)  # by created_at (ms), then id: a tie is likely
    assert sorted(listed, key=lambda a: a.artifact_id) == sorted([artifact, report], key=lambda a: a.artifact_id)
    assert await derived_artifacts.list_derived_artifacts(pool, user, artifact_type="cycle_report") == [report]
    with pytest.raises(NotFoundError):
        await derived_artifacts.create_derived_artifact(
            pool, user, artifact_type="trophy", title="x", source_concept_id="missing"
        )
    assert await derived_artifacts.delete_derived_artifact(pool, user, "a-1")
    assert not await derived_artifacts.delete_derived_artifact(pool, user, "a-1")


async def test_proactive_prompts_round_trip(pool: asyncpg.Pool, user: str) -> None:
    low = await proactive_prompts.create_proactive_prompt(
        pool,
        user,
        prompt_text="How did the talk with Lena go?",
        source_agent="ProactivePromptAgent",
        priority=3,
        metadata={"concept_id": "k-1"},
        prompt_id="p-1",
    )
    assert (low.prompt_id, low.prompt_text, low.source_agent, low.status, low.priority, low.metadata) == (
        "p-1",
        "How did the talk with Lena go?",
        "ProactivePromptAgent",
        "pending",
        3,
        {"concept_id": "k-1"},
    )
    assert low.delivered_at is None
    high = await proactive_prompts.create_proactive_prompt(pool, user, prompt_text="Run?", source_agent="a", priority=9)
    assert [p.prompt_id for p in await proactive_prompts.list_proactive_prompts(pool, user)] == [high.prompt_id, "p-1"]
    await proactive_prompts.set_proactive_prompt_status(pool, user, "p-1", "delivered", delivered_at=MOMENT)
    delivered = await proactive_prompts.get_proactive_prompt(pool, user, "p-1")
    assert delivered is not None and (delivered.status, delivered.delivered_at) == ("delivered", MOMENT)
    await proactive_prompts.set_proactive_prompt_status(pool, user, "p-1", "answered")
    answered = await proactive_prompts.get_proactive_prompt(pool, user, "p-1")
    assert answered is not None and (answered.status, answered.delivered_at) == ("answered", MOMENT)
    assert await proactive_prompts.list_proactive_prompts(pool, user, status="pending") == [high]
    with pytest.raises(NotFoundError):
        await proactive_prompts.set_proactive_prompt_status(pool, user, "missing", "delivered")


async def test_communities_round_trip(pool: asyncpg.Pool, user: str) -> None:
    community = await communities.create_community(
        pool,
        user,
        name="Running",
        description="Training",
        core_concept_ids=["k-1", "k-2"],
        detection_method="louvain",
        metadata={"modularity": 0.4},
        community_id="cm-1",
    )
    assert (community.name, community.description, community.core_concept_ids, community.detection_method) == (
        "Running",
        "Training",
        ["k-1", "k-2"],
        "louvain",
    )
    assert community.metadata == {"modularity": 0.4} and community.last_analyzed_ts == community.created_at
    assert await communities.get_community(pool, user, "cm-1") == community
    await asyncio.sleep(0.01)
    await communities.update_community(pool, user, "cm-1", description="Training for Lisbon", core_concept_ids=["k-2"])
    updated = await communities.get_community(pool, user, "cm-1")
    assert updated is not None and community.last_analyzed_ts is not None and updated.last_analyzed_ts is not None
    assert (updated.name, updated.description, updated.core_concept_ids) == ("Running", "Training for Lisbon", ["k-2"])
    assert updated.last_analyzed_ts > community.last_analyzed_ts
    assert await communities.list_communities(pool, user) == [updated]
    with pytest.raises(NotFoundError):
        await communities.create_community(pool, user, name="x", core_concept_ids=["k-1", "missing"])
    with pytest.raises(NotFoundError):
        await communities.update_community(pool, user, "cm-1", core_concept_ids=["missing"])
    await pool.execute("UPDATE communities SET core_concept_ids = NULL WHERE community_id = 'cm-1'")
    nulled = await communities.get_community(pool, user, "cm-1")
    assert nulled is not None and nulled.core_concept_ids == []
    assert await communities.delete_community(pool, user, "cm-1")
    assert await communities.list_communities(pool, user) == []


async def test_graph_projections_round_trip_and_bad_json(pool: asyncpg.Pool, user: str) -> None:
    old = await graph_projections.create_graph_projection(pool, user, projection_data={"nodes": []}, projection_id="g1")
    await asyncio.sleep(0.01)
    new = await graph_projections.create_graph_projection(pool, user, projection_data={"nodes": [1]}, status="pending")
    assert (old.projection_id, old.status, old.projection_data) == ("g1", "completed", {"nodes": []})
    assert await graph_projections.get_graph_projection(pool, user, "g1") == old
    assert await graph_projections.latest_graph_projection(pool, user) == old
    await graph_projections.set_graph_projection_status(pool, user, new.projection_id, "completed")
    latest = await graph_projections.latest_graph_projection(pool, user)
    assert latest is not None and latest.projection_id == new.projection_id
    assert [p.projection_id for p in await graph_projections.list_graph_projections(pool, user)] == [
        new.projection_id,
        "g1",
    ]
    await pool.execute("""UPDATE user_graph_projections SET projection_data = '[1, 2]' WHERE projection_id = 'g1'""")
    odd = await graph_projections.get_graph_projection(pool, user, "g1")
    assert odd is not None and odd.projection_data == {}
    with pytest.raises(NotFoundError):
        await graph_projections.set_graph_projection_status(pool, user, "missing", "failed")
