"""A user in the middle (or at the end) of a growth cycle, written directly in SQL with chosen timestamps: what the
cycle agents' job tests start from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from store.repos._base import to_db


@dataclass
class SeededUser:
    user_id: str
    cycle_start: datetime
    memory_ids: list[str] = field(default_factory=list)
    concept_ids: list[str] = field(default_factory=list)


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def seed_user(
    pool: asyncpg.Pool,
    *,
    cycle_age: timedelta = timedelta(days=7),
    memories: int = 3,
    concepts: int = 2,
    growth: tuple[tuple[str, float, timedelta], ...] = (),
    activity_age: timedelta = timedelta(days=2),
    community: bool = False,
) -> SeededUser:
    """A user whose cycle started `cycle_age` ago, with one processed conversation, `memories` memory units and
    `concepts` concepts from `activity_age` ago (each memory unit IS_ABOUT the first concept), and growth events
    (dimension, delta, age). `community` puts every concept in one community."""
    now = now_s()
    user_id = str(uuid.uuid4())
    user = SeededUser(user_id, now - cycle_age)
    at = to_db(now - activity_age)
    await pool.execute(
        "INSERT INTO users (user_id, email, name, created_at, last_cycle_started_at, concepts_created_in_cycle) "
        "VALUES ($1, $2, 'Maya', $3, $4, $5)",
        user_id,
        f"{user_id[:8]}@example.com",
        to_db(now - cycle_age - timedelta(days=30)),
        to_db(user.cycle_start),
        concepts,
    )
    conversation_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO conversations (id, user_id, title, start_time, status) VALUES ($1, $2, 'Run', $3, 'processed')",
        conversation_id,
        user_id,
        at,
    )
    community_id = str(uuid.uuid4()) if community else None
    if community_id:
        await pool.execute(
            "INSERT INTO communities (community_id, user_id, name, created_at) VALUES ($1, $2, 'Running', $3)",
            community_id,
            user_id,
            at,
        )
    for n in range(concepts):
        concept_id = str(uuid.uuid4())
        user.concept_ids.append(concept_id)
        await pool.execute(
            "INSERT INTO concepts (concept_id, user_id, name, type, description, salience, created_at, "
            "last_updated_ts, community_id) VALUES ($1, $2, $3, 'activity', $4, $5, $6, $6, $7)",
            concept_id,
            user_id,
            f"concept {n}",
            f"Something Maya does, number {n}",
            1.0 - n / 10,
            at,
            community_id,
        )
    for n in range(memories):
        muid = str(uuid.uuid4())
        user.memory_ids.append(muid)
        await pool.execute(
            "INSERT INTO memory_units (muid, user_id, title, content, creation_ts, ingestion_ts, last_modified_ts, "
            "importance_score, source_conversation_id) VALUES ($1, $2, $3, $4, $5, $5, $5, $6, $7)",
            muid,
            user_id,
            f"Memory {n}",
            f"Maya ran {n + 5} km along the river and felt strong (memory {n}).",
            to_db(now - activity_age - timedelta(minutes=n)),  # memory 0 is the newest
            float(8 - n),
            conversation_id,
        )
        if user.concept_ids:
            await pool.execute(
                "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, "
                "target_type, relationship_type, strength) "
                "VALUES ($1, $2, $3, 'MemoryUnit', $4, 'Concept', 'IS_ABOUT', 0.9)",
                str(uuid.uuid4()),
                user_id,
                muid,
                user.concept_ids[0],
            )
    for dimension, delta, age in growth:
        await pool.execute(
            "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at) "
            "VALUES ($1, $2, $3, 'MemoryUnit', $4, $5, 'ingestion', $6)",
            str(uuid.uuid4()),
            user_id,
            user.memory_ids[0] if user.memory_ids else user_id,
            dimension,
            delta,
            to_db(now - age),
        )
    return user
