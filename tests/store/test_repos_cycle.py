"""Round trips for the batch agents' tables: artifacts, prompts, communities and graph projections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from store.repos import (
    communities,
    derived_artifacts,
    graph_projections,
    proactive_prompts,
    users,
)
from store.repos._base import utc_now
from store.repos.communities import CommunityRow
from store.repos.derived_artifacts import NewArtifact
from tests.store import testrows

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> str:
    await users.create_user(pool, "u-1", email="a@example.org")
    await testrows.insert_memory_unit(
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
        await testrows.create_concept(
            pool, "u-1", name=concept_id, type="t", description=None, normalized_name=concept_id, concept_id=concept_id
        )
    return "u-1"


async def test_derived_artifacts_round_trip(pool: asyncpg.Pool, user: str) -> None:
    artifact = await testrows.create_derived_artifact(
        pool,
        user,
        artifact_type="insight_summary",
        title="Patience",
        content_narrative="You slowed down.",
        content_data={"score": 3, "source_concept_ids": ["k-1", "k-2"]},
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
    assert (artifact.source_memory_unit_id, artifact.source_concept_id) == ("mu-1", "k-1")
    assert artifact.generated_by_agent == "InsightAgent" and artifact.created_at.tzinfo is UTC
    report = await testrows.create_derived_artifact(pool, user, artifact_type="cycle_report", title="W1")
    assert await derived_artifacts.artifact_exists(pool, user, "a-1")
    assert not await derived_artifacts.artifact_exists(pool, user, "missing")
    listed = await derived_artifacts.list_derived_artifacts(pool, user)  # by created_at (ms), then id: a tie is likely
    assert sorted(listed, key=lambda a: a.artifact_id) == sorted([artifact, report], key=lambda a: a.artifact_id)
    assert await derived_artifacts.list_derived_artifacts(pool, user, artifact_type="cycle_report") == [report]
    again = NewArtifact(
        artifact_id="a-1", artifact_type="insight_summary", title="x", content_narrative=None, content_data=None
    )
    assert await derived_artifacts.insert_artifacts(pool, user, [again], generated_by="x") == []  # written once
    stray = await testrows.create_derived_artifact(
        pool, user, artifact_type="trophy", title="x", source_concept_id="missing", source_memory_unit_id="other's"
    )
    assert (stray.source_concept_id, stray.source_memory_unit_id) == (None, None)  # never a row that is not hers

    assert await derived_artifacts.repoint_concept_sources(pool, user, "k-2", ["k-1"]) == ["a-1"]
    moved = await testrows.get_derived_artifact(pool, user, "a-1")
    assert moved is not None and moved.source_concept_id == "k-2"
    assert moved.content_data == {"score": 3, "source_concept_ids": ["k-2"]}  # one, not twice
    assert await derived_artifacts.drop_memory_unit_sources(pool, user, ["mu-1"]) == ["a-1"]
    dropped = await testrows.get_derived_artifact(pool, user, "a-1")
    assert dropped is not None and dropped.source_memory_unit_id is None


async def test_proactive_prompts_round_trip(pool: asyncpg.Pool, user: str) -> None:
    low = await testrows.create_proactive_prompt(
        pool,
        user,
        prompt_text="How did the talk with Lena go?",
        source_agent="ProactivePromptAgent",
        priority=3,
        metadata={"concept_id": "k-1", "run_key": "daily:20261120"},
        prompt_id="p-1",
    )
    assert (low.prompt_id, low.prompt_text, low.source_agent, low.status, low.priority, low.delivered_at) == (
        "p-1",
        "How did the talk with Lena go?",
        "ProactivePromptAgent",
        "pending",
        3,
        None,
    )
    high = await testrows.create_proactive_prompt(pool, user, prompt_text="Run?", source_agent="a", priority=9)
    assert [p.prompt_id for p in await proactive_prompts.list_proactive_prompts(pool, user)] == [high.prompt_id, "p-1"]
    assert sorted(await proactive_prompts.pending_texts(pool, user)) == ["How did the talk with Lena go?", "Run?"]
    assert await proactive_prompts.run_wrote_prompts(pool, user, "daily:20261120")
    assert not await proactive_prompts.run_wrote_prompts(pool, user, "daily:20261121")
    await pool.execute(
        "UPDATE proactive_prompts SET created_at = $1 WHERE prompt_id = 'p-1'", MOMENT.replace(tzinfo=None)
    )
    assert (
        await proactive_prompts.expire_pending(pool, user, created_before=MOMENT + timedelta(seconds=1), now=MOMENT)
        == 1
    )
    assert await proactive_prompts.list_proactive_prompts(pool, user, status="pending") == [high]
    expired = await testrows.get_proactive_prompt(pool, user, "p-1")
    assert expired is not None and expired.status == "expired"


async def test_communities_round_trip(pool: asyncpg.Pool, user: str) -> None:
    community = await testrows.create_community(
        pool,
        user,
        name="Running",
        description="Training",
        core_concept_ids=["k-1", "k-2", "someone else's"],
        detection_method="louvain",
        metadata={"modularity": 0.4},
        community_id="cm-1",
    )
    assert (community.name, community.description, community.core_concept_ids, community.detection_method) == (
        "Running",
        "Training",
        ["k-1", "k-2"],  # only ever her own concepts
        "louvain",
    )
    assert community.metadata == {"modularity": 0.4} and community.last_analyzed_ts == community.created_at
    await asyncio.sleep(0.01)
    row = CommunityRow(community_id="cm-1", name="Running", description="Lisbon", members=["k-2"], metadata={})
    await communities.update_communities(pool, user, [row], detection_method="louvain-2", at=utc_now())
    updated = await testrows.get_community(pool, user, "cm-1")
    assert updated is not None and community.last_analyzed_ts is not None and updated.last_analyzed_ts is not None
    assert (updated.description, updated.core_concept_ids, updated.detection_method) == ("Lisbon", ["k-2"], "louvain-2")
    assert updated.last_analyzed_ts > community.last_analyzed_ts
    assert await communities.list_communities(pool, user) == [updated]
    assert await communities.repoint_members(pool, user, "k-1", ["k-2"]) == ["cm-1"]
    repointed = await testrows.get_community(pool, user, "cm-1")
    assert repointed is not None and repointed.core_concept_ids == ["k-1"]
    await pool.execute("UPDATE communities SET core_concept_ids = NULL WHERE community_id = 'cm-1'")
    nulled = await testrows.get_community(pool, user, "cm-1")
    assert nulled is not None and nulled.core_concept_ids == []
    assert await communities.delete_communities(pool, user, ["cm-1", "missing"]) == 1
    assert await communities.list_communities(pool, user) == []


async def test_graph_projections_round_trip_and_bad_json(pool: asyncpg.Pool, user: str) -> None:
    old = await testrows.create_graph_projection(pool, user, projection_data={"nodes": []}, projection_id="g1")
    await asyncio.sleep(0.01)
    assert (old.projection_id, old.status, old.projection_data) == ("g1", "completed", {"nodes": []})
    assert await graph_projections.graph_projection_exists(pool, user, "g1")
    assert not await graph_projections.insert_graph_projection(pool, user, "g1", {"nodes": [2]})  # written once
    assert await graph_projections.latest_graph_projection(pool, user) == old
    new = await testrows.create_graph_projection(pool, user, projection_data={"nodes": [1]})
    latest = await graph_projections.latest_graph_projection(pool, user)
    assert latest is not None and latest.projection_id == new.projection_id
    assert [p.projection_id for p in await testrows.list_graph_projections(pool, user)] == [new.projection_id, "g1"]
    await pool.execute("""UPDATE user_graph_projections SET projection_data = '[1, 2]' WHERE projection_id = 'g1'""")
    odd = await testrows.get_graph_projection(pool, user, "g1")
    assert odd is not None and odd.projection_data == {}
