"""An existing deployment upgraded across issue 20's migrations converges by itself (migration 0024): the graph and
vector stores an earlier Orrery filled come to match Postgres through the outbox, with no `reconcile --repair`, and
pending prompts written before prompts were packaged get the expiry that makes them deliverable."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cli.session import Session
from clients.contract import NextConversationContextPackage
from core.vocabulary import EntityKind, RelationshipType, StructuralRelationshipType
from store import outbox
from store.migrate import MIGRATIONS_DIR, migrate
from store.postgres import connect, create_pool
from store.proactive_prompts_writes import expire_prompts
from store.reconcile import graph_drift, vector_drift
from store.repos import cards, concepts, conversations, proactive_prompts, users
from store.sync import graph_batch, user_refs
from tests.store import testrows
from tests.store.derived_memory import drain, open_stores, store_settings

UPGRADE = "0024"
"""The migration under test: what came before it is the upgrade an existing deployment runs."""
BEFORE_ISSUE_20 = "0020"
NEW_EDGES = {
    StructuralRelationshipType.AUTHORED_BY,
    StructuralRelationshipType.MENTIONS,
    StructuralRelationshipType.MERGED_INTO,
}
"""The relationships an Orrery from before issue 20 never wrote."""


def migrations_before(version: str, into: Path) -> Path:
    """A copy of the migrations older than `version`: a database migrated with it is one an earlier Orrery left."""
    into.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name[:4] < version:
            shutil.copy(path, into / path.name)
    return into


async def migrate_with(url: str, directory: Path) -> None:
    conn = await connect(url)
    try:
        await migrate(conn, directory)
    finally:
        await conn.close()


@pytest.fixture
async def old_pool(empty_database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """A database as Orrery left it before issue 20 (migrated to 0019)."""
    await migrate_with(empty_database_url, migrations_before(BEFORE_ISSUE_20, tmp_path / "before"))
    pool = await create_pool(empty_database_url, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


async def seed_old_vocabulary(pool: asyncpg.Pool) -> str:
    """A user whose rows are in the vocabulary an earlier Orrery wrote: insight's artifact and card types
    `pattern`/`breakthrough`, a memory unit related to a concept, a concept merged into another."""
    uid = (await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex[:10]}@example.com")).user_id
    conversation = await conversations.create_conversation(pool, uid, status="processed")
    unit, lonely = [
        await testrows.insert_memory_unit(
            pool,
            uid,
            title=title,
            content=f"{title}.",
            creation_ts=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
            importance_score=6,
            sentiment_score=0.4,
            source_conversation_id=conversation.id,
        )
        for title in ("Ran with Emma", "A quiet day")
    ]
    running, runs = [
        await testrows.create_concept(pool, uid, name=name, type="activity", normalized_name=name.lower())
        for name in ("Running", "Runs")
    ]
    await testrows.upsert_edge(
        pool,
        uid,
        source_id=unit.muid,
        source_type=EntityKind.MEMORY_UNIT,
        target_id=running.concept_id,
        target_type=EntityKind.CONCEPT,
        relationship_type=RelationshipType.RELATED_TO,
        strength=0.7,
        description=None,
        source_conversation_id=conversation.id,
    )
    await concepts.mark_merged(pool, uid, running.concept_id, [runs.concept_id], at=datetime.now(UTC))
    for kind in ("pattern", "breakthrough", "insight_summary"):
        artifact = await testrows.create_derived_artifact(
            pool,
            uid,
            artifact_type=kind,
            title=f"A {kind}",
            content_narrative="Runs keep her steady.",
            content_data={"model": "m"},
            source_memory_unit_id=unit.muid,
            generated_by_agent="InsightAgent",
        )
        await cards.ensure_card(
            pool,
            uid,
            card_type=kind,
            source_entity_id=artifact.artifact_id,
            source_entity_type="DerivedArtifact",
            display_data={"title": kind, "preview": "", "artifact_type": kind},
        )
    assert lonely.muid
    return uid


async def sync_as_before_issue_20(session: Session, uid: str) -> None:
    """Fill both stores as an earlier Orrery did: the vector dispatcher over every entity (its artifact tags were the
    old types), and the graph without the relationships it did not write (0019 refuses a relationship to a User)."""
    refs = await user_refs(session.pool, uid)
    await outbox.record_changes(
        session.pool, uid, [outbox.Change(r.label, r.entity_id) for r in refs], stores=("vector",)
    )
    await drain(session)
    graph = await session.graph()
    batch = await graph_batch(session.pool, graph, uid, refs)
    old = tuple(edge for edge in batch.upsert_edges if edge.type not in NEW_EDGES)
    assert len(old) < len(batch.upsert_edges)
    await graph.apply(uid, batch.model_copy(update={"upsert_edges": old}))


async def drifted(session: Session, uid: str) -> dict[str, dict[str, int]]:
    """What `reconcile` (without --repair) finds per store: the kinds that drifted and by how many."""
    vector = await session.vector()
    found = [
        await graph_drift(session.pool, await session.graph(), uid),
        await vector_drift(session.pool, vector, uid, vector.model_version),
    ]
    return {drift.store: {kind.kind: len(kind.drift) for kind in drift.kinds if kind.drift} for drift in found}


async def backlog(pool: asyncpg.Pool) -> dict[str, int]:
    return {b.store: b.rows for b in await outbox.backlog(pool)}


async def test_an_upgraded_deployment_s_stores_converge_through_the_outbox_without_repair(
    old_pool: asyncpg.Pool, empty_database_url: str, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    settings = store_settings(empty_database_url, redis_url, tmp_path / "data")
    uid = await seed_old_vocabulary(old_pool)
    async with open_stores(settings, old_pool, redis_client) as session:
        await sync_as_before_issue_20(session, uid)
    assert await backlog(old_pool) == {"graph": 0, "vector": 0}

    # issue 20's migrations (0020-0022) rewrite the rows, and alone leave the stores behind them, with nothing to
    # repair it (0023, which queues the artifacts for the graph for its own reason, comes after)
    await migrate_with(empty_database_url, migrations_before("0023", tmp_path / "upto"))
    async with open_stores(settings, old_pool, redis_client) as session:
        assert await drifted(session, uid) == {
            "graph": {"DerivedArtifact": 2, "AUTHORED_BY": 2, "MENTIONS": 1, "MERGED_INTO": 1},
            "vector": {"DerivedArtifact": 2},  # pattern and breakthrough: the insight_summary kept its type
        }
    assert await backlog(old_pool) == {"graph": 0, "vector": 0}

    await migrate_with(empty_database_url, MIGRATIONS_DIR)
    enqueued = await backlog(old_pool)
    # 0024: the memory units, the merged concept and the artifacts; 0023 queued the artifacts for the graph too
    assert enqueued == {"graph": 2 + 1 + 3 + 3, "vector": 3}
    async with open_stores(settings, old_pool, redis_client) as session:
        await drain(session)
        assert await drifted(session, uid) == {"graph": {}, "vector": {}}
    tags = await old_pool.fetch(
        "SELECT v.tags FROM runtime.vector_items v WHERE v.user_id = $1 AND v.source_entity_type = 'DerivedArtifact'",
        uid,
    )
    assert sorted(tag for row in tags for tag in row["tags"]) == ["insight_summary", "insight_summary", "trophy"]


async def test_a_fresh_database_gets_no_outbox_rows_from_the_upgrade(empty_database_url: str) -> None:
    await migrate_with(empty_database_url, MIGRATIONS_DIR)
    conn = await connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runtime.outbox") == 0
    finally:
        await conn.close()


# --- pending prompts from before prompts were packaged -----------------------------------------------------------

PACKAGE: dict[str, Any] = {
    "proactive_greeting": "Welcome back!",
    "unresolved_topics": [],
    "suggested_focus": None,
    "source_conversation_id": "c-1",
    "source_conversation_start_time": "2026-11-19T08:00:00+00:00",
    "generated_at": "2026-11-19T09:00:00+00:00",
    "proactive_prompts": [],
}


async def old_prompt(pool: asyncpg.Pool, uid: str, text: str, *, age: timedelta, metadata: object) -> str:
    """A prompt as an earlier Orrery (or the web app) left it: its own metadata and age."""
    prompt = await testrows.create_proactive_prompt(pool, uid, prompt_text=text, source_agent="ProactivePromptAgent")
    await pool.execute(
        "UPDATE proactive_prompts SET created_at = (now() AT TIME ZONE 'UTC') - $2::interval, metadata = $3::jsonb "
        "WHERE prompt_id = $1",
        prompt.prompt_id,
        age,
        metadata,
    )
    return prompt.prompt_id


async def test_pending_prompts_without_a_readable_expiry_get_the_code_s_and_reach_the_package_or_expire(
    pool: asyncpg.Pool,
) -> None:
    uid = (await users.create_user(pool, "old-prompts", email="old-prompts@example.org")).user_id
    await users.record_ingestion(pool, uid, concepts_created=0, next_context=PACKAGE)
    kept_expiry = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    ids = {
        "recent": await old_prompt(pool, uid, "Recent?", age=timedelta(days=2), metadata={"rationale": "r"}),
        "unreadable": await old_prompt(
            pool, uid, "Odd?", age=timedelta(days=1), metadata={"expires_at": "2026-13-01T00:00Z"}
        ),
        "null": await old_prompt(pool, uid, "Null?", age=timedelta(days=1), metadata=None),
        "naive": await old_prompt(
            pool, uid, "Naive?", age=timedelta(days=1), metadata={"expires_at": "2030-01-01T00:00"}
        ),
        "number": await old_prompt(pool, uid, "Number?", age=timedelta(days=1), metadata={"expires_at": 5}),
        "delivered": await old_prompt(pool, uid, "Asked?", age=timedelta(days=1), metadata={}),
        "stale": await old_prompt(pool, uid, "Stale?", age=timedelta(days=20), metadata={}),
        "readable": await old_prompt(pool, uid, "New?", age=timedelta(days=1), metadata={"expires_at": kept_expiry}),
    }
    await pool.execute("UPDATE proactive_prompts SET status = 'delivered' WHERE prompt_id = $1", ids["delivered"])
    now = datetime.now(UTC)
    deliverable = {p.prompt_id for p in await proactive_prompts.deliverable(pool, uid, now=now, limit=10)}
    assert deliverable == {ids["readable"]}  # the defect: the others are never offered
    backfilled = ("recent", "unreadable", "null", "naive", "number", "stale")

    await pool.execute((MIGRATIONS_DIR / f"{UPGRADE}_resync_and_prompt_expiry.sql").read_text(encoding="utf-8"))

    prompts = {p.prompt_id: p for p in await proactive_prompts.list_proactive_prompts(pool, uid)}
    for key in backfilled:
        prompt = prompts[ids[key]]
        assert proactive_prompts.expires_at(prompt) == prompt.created_at + timedelta(days=14), key
    assert (prompts[ids["recent"]].metadata or {})["rationale"] == "r"  # the prompt's other metadata kept
    assert (prompts[ids["readable"]].metadata or {})["expires_at"] == kept_expiry
    assert prompts[ids["delivered"]].metadata == {}  # only pending prompts are offered, so only they need it

    # the next write of the package (here the daily run's expiry step) offers them, and the stale one expires
    expired = await expire_prompts(pool, uid, created_before=now - timedelta(days=14), now=now)
    assert expired == 1
    deliverable = {p.prompt_id for p in await proactive_prompts.deliverable(pool, uid, now=now, limit=10)}
    assert deliverable == {ids[key] for key in (*backfilled, "readable") if key != "stale"}
    stored = await pool.fetchval("SELECT next_conversation_context_package FROM users WHERE user_id = $1", uid)
    package = NextConversationContextPackage.model_validate(stored)
    packaged = [p.prompt_id for p in package.proactive_prompts]
    assert len(packaged) == 3 and packaged[0] == ids["recent"] and set(packaged) <= deliverable  # the oldest first
    assert (await testrows.get_proactive_prompt(pool, uid, ids["stale"])).status == "expired"  # type: ignore[union-attr]
