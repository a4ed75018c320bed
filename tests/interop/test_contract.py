"""docs/contract.md tells the truth: every JSON object a real ingestion writes fits the strict shapes the page is
generated from (a key added to the write without a line in clients/contract.py fails here), and every value of the
listed vocabularies is one the page lists. The page's staleness is checked by test_typescript_producer.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from pydantic import SecretStr

from agents.scripted_llm import ScriptedLLMServer, ScriptedReply, load_sample_answers
from clients.contract import (
    CARD_TYPES,
    STATUS_OWNERS,
    ConversationFailure,
    GrowthEventDetails,
    MemoryUnitMetadata,
    NextConversationContextPackage,
)
from core.vocabulary import EntityKind, GrowthDimension
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import QUEUES
from jobs.runtime.worker import WorkerOptions, run_workers
from settings import load_settings
from store.ingestion_writes import GROWTH_SOURCE
from store.migrate import MIGRATIONS_DIR as MIGRATIONS
from store.repos import cards, conversations, users
from tests.interop.contract_values import undocumented_values
from tests.jobs.testjobs import TEST_JOBS
from tests.store import testrows


async def test_an_ingestion_writes_only_what_the_contract_lists(
    pool: asyncpg.Pool, database_url: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    user = await users.create_user(pool, str(uuid.uuid4()), email="contract@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended")
    await conversations.add_message(pool, user.user_id, conversation.id, role="user", content="Ran 10k, no stops!")
    with ScriptedLLMServer() as llm:
        llm.enqueue(ScriptedReply.json(load_sample_answers()[0].answer))
        settings = load_settings(
            database_url=database_url,
            redis_url=redis_url,
            data_dir=tmp_path,
            poll_delay_s=0.01,
            projection_refresh_delay_s=0,  # a burst worker would wait out the debounce
            openai_base_url=llm.base_url,
            openai_api_key=SecretStr("test-key"),
        )
        await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
        options = WorkerOptions(queues=QUEUES, concurrency=2, burst=True)
        await asyncio.wait_for(run_workers(settings, database_url, redis_url, options, TEST_JOBS), 60)

    user_id = user.user_id
    assert await pool.fetchval("SELECT status FROM conversations WHERE id = $1", conversation.id) in STATUS_OWNERS
    cards = await pool.fetch(
        "SELECT card_type, source_entity_type, display_data FROM cards WHERE user_id = $1", user_id
    )
    assert {card["card_type"] for card in cards} == {"concept", "memory"}  # the sample answer makes both kinds
    for card in cards:
        kind, shape = CARD_TYPES[card["card_type"]]
        assert card["source_entity_type"] == kind
        shape.model_validate(card["display_data"])
    events = await pool.fetch(
        "SELECT entity_type, dim_key, source, details FROM growth_events WHERE user_id = $1", user_id
    )
    assert events
    for event in events:
        assert event["entity_type"] in {kind.value for kind in EntityKind}
        assert event["dim_key"] in {dim.value for dim in GrowthDimension}
        assert event["source"] == GROWTH_SOURCE
        GrowthEventDetails.model_validate(event["details"])
    metadata = await pool.fetch("SELECT metadata FROM memory_units WHERE user_id = $1", user_id)
    assert metadata
    for row in metadata:
        MemoryUnitMetadata.model_validate(row["metadata"])
    package = await pool.fetchval("SELECT next_conversation_context_package FROM users WHERE user_id = $1", user_id)
    NextConversationContextPackage.model_validate(package)
    assert await undocumented_values(pool) == []


async def test_values_the_contract_does_not_list_are_found_and_the_upgrade_rewrites_them(pool: asyncpg.Pool) -> None:
    """What an earlier Orrery wrote (growth source `ingestion`, artifact and card types `pattern`/`breakthrough`)
    is reported as undocumented, and migration 0020 rewrites it to the contract's values."""
    user = await users.create_user(pool, str(uuid.uuid4()), email="old-values@example.com")
    unit = await testrows.insert_memory_unit(
        pool,
        user.user_id,
        title="t",
        content="c",
        creation_ts=datetime.now(UTC),
        importance_score=None,
        sentiment_score=None,
        source_conversation_id=None,
        metadata={"extraction_key": "m1", "prompt_version": "v", "model": "m"},
    )
    await testrows.insert_growth_event(
        pool,
        user.user_id,
        entity_id=unit.muid,
        entity_type="MemoryUnit",
        dim_key="act_self",
        delta=0.5,
        source="ingestion",
        details={"rationale": "r", "source_conversation_id": "c"},
    )
    for kind in ("pattern", "breakthrough"):
        artifact = await testrows.create_derived_artifact(
            pool,
            user.user_id,
            artifact_type=kind,
            title=kind,
            content_data={"model": "m"},
            generated_by_agent="InsightAgent",
        )
        await cards.ensure_card(
            pool,
            user.user_id,
            card_type=kind,
            source_entity_id=artifact.artifact_id,
            source_entity_type="DerivedArtifact",
            display_data={"title": kind, "preview": "", "artifact_type": kind},
        )
    found = await undocumented_values(pool)
    assert {
        "growth_events.source = 'ingestion'",
        "derived_artifacts.artifact_type = 'pattern'",
        "derived_artifacts.artifact_type = 'breakthrough'",
        "cards.card_type = 'pattern'",
    } <= set(found), found

    await pool.execute((MIGRATIONS / "0020_seed_vocabulary.sql").read_text(encoding="utf-8"))
    assert await undocumented_values(pool) == []
    rows = await pool.fetch(
        "SELECT title, artifact_type, content_data FROM derived_artifacts WHERE user_id = $1", user.user_id
    )
    assert {(r["title"], r["artifact_type"], r["content_data"]["insight_kind"]) for r in rows} == {
        ("pattern", "insight_summary", "pattern"),
        ("breakthrough", "trophy", "breakthrough"),
    }


async def test_a_failed_conversation_carries_the_documented_failure(pool: asyncpg.Pool) -> None:
    user = await users.create_user(pool, str(uuid.uuid4()), email="failed@example.com")
    conversation = await conversations.create_conversation(pool, user.user_id, status="ended", metadata={"app": 1})
    await conversations.mark_conversation_failed(pool, user.user_id, conversation.id, "ingest: the LLM refused")
    row = await pool.fetchrow("SELECT status, metadata FROM conversations WHERE id = $1", conversation.id)
    assert row["status"] == "failed" and row["metadata"]["app"] == 1
    ConversationFailure.model_validate(row["metadata"]["failure"])
