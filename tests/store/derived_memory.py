"""A user whose memory reaches every kind of node and relationship the derived stores hold, and the in-process
dispatcher that applies it: what the reconcile, rebuild and forget-user tests start from."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from cli.session import Session, dispatch
from core.vocabulary import EntityKind, RelationshipType
from settings import Settings, load_settings
from store import outbox
from store.repos import conversations, users
from store.sync import user_refs
from tests.store import testrows


@dataclass(frozen=True)
class Memory:
    user_id: str
    conversation_id: str
    units: tuple[str, str]
    concepts: tuple[str, str]
    community: str
    artifact: str


def store_settings(database_url: str, redis_url: str, data_dir: Path) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url, data_dir=data_dir)


async def remember(pool: asyncpg.Pool, name: str = "Ana") -> Memory:
    """Two memory units, two concepts (one in a community), an artifact derived from a memory unit that highlights
    the other one and a concept, two extracted relationships; outbox rows for all of it, not yet applied."""
    user = await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex[:10]}@example.com", name=name)
    uid = user.user_id
    conversation = await conversations.create_conversation(pool, uid, status="processed")
    await conversations.add_message(pool, uid, conversation.id, role="user", content=f"{name} ran ten kilometres")
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    units = [
        await testrows.insert_memory_unit(
            pool,
            uid,
            title=title,
            content=content,
            creation_ts=at,
            importance_score=7,
            sentiment_score=0.5,
            source_conversation_id=conversation.id,
        )
        for title, content in (
            ("First 10k", f"{name} ran ten kilometres without stopping."),
            ("Sister's visit", f"{name}'s sister Emma is visiting next week."),
        )
    ]
    ideas = [
        await testrows.create_concept(
            pool, uid, name=label, type=kind, description=f"{label} in {name}'s life", normalized_name=label.lower()
        )
        for label, kind in (("Running", "activity"), ("Emma", "person"))
    ]
    community = await testrows.create_community(pool, uid, name="Health", core_concept_ids=[ideas[0].concept_id])
    await pool.execute(
        "UPDATE concepts SET community_id = $1 WHERE concept_id = $2", community.community_id, ideas[0].concept_id
    )
    artifact = await testrows.create_derived_artifact(
        pool,
        uid,
        artifact_type="cycle_report",
        title="Consistency",
        content_narrative="Runs keep her steady.",
        source_memory_unit_id=units[0].muid,
        content_data={  # what it highlights, as a cycle report keeps it; old JSON names what is gone, or junk
            "memory_highlights": [{"memory_unit_id": units[1].muid}, {"memory_unit_id": str(uuid.uuid4())}],
            "top_concepts": [{"concept_id": ideas[1].concept_id}, {"concept_id": 7}, "Emma", None],
        },
    )
    for source, source_type, target, kind in (
        (units[0].muid, EntityKind.MEMORY_UNIT, ideas[0].concept_id, RelationshipType.IS_ABOUT),
        (ideas[0].concept_id, EntityKind.CONCEPT, ideas[1].concept_id, RelationshipType.RELATED_TO),
    ):
        await testrows.upsert_edge(
            pool,
            uid,
            source_id=source,
            source_type=source_type,
            target_id=target,
            target_type=EntityKind.CONCEPT,
            relationship_type=kind,
            strength=0.8,
            description=None,
            source_conversation_id=conversation.id,
        )
    refs = await user_refs(pool, uid)
    await outbox.record_changes(pool, uid, [outbox.Change(ref.label, ref.entity_id) for ref in refs])
    return Memory(
        uid,
        conversation.id,
        (units[0].muid, units[1].muid),
        (ideas[0].concept_id, ideas[1].concept_id),
        community.community_id,
        artifact.artifact_id,
    )


@asynccontextmanager
async def open_stores(settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis) -> AsyncIterator[Session]:
    """What a command opens: the stores as a worker opens them (the local embedding model for vectors)."""
    async with AsyncExitStack() as stack:
        session = Session(settings, pool, redis, stack)
        stack.push_async_callback(session.resources.aclose)
        yield session


async def drain(session: Session) -> None:
    """Apply every due outbox row to both stores, as `run.py sync run` does."""
    for store in outbox.STORES:
        applied = await dispatch(session, store)
        assert not applied.failed, applied.last_error
