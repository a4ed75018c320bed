"""Load the sample user and their conversations, with ids that make a second run change nothing.

Ids are uuid5 of a fixed namespace and the user's e-mail (plus the conversation key, plus the message index), so
the same e-mail always maps to the same rows: a re-run finds them and leaves them as they are, including their
timestamps and any status ingestion has moved them to since.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from store.context import TurnContextPackage, write_turn_context
from store.repos import conversations, interaction_logs, memory_units, users
from store.repos.interaction_logs import NewInteraction

SAMPLE_FILE = Path(__file__).with_name("sample_user.json")
SAMPLE_NAMESPACE = uuid.UUID("fedb2f11-2930-41fc-8e1d-e6650b053014")
MESSAGE_SPACING = timedelta(minutes=2)


class SampleError(Exception):
    """The sample cannot be loaded for this e-mail; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleUser(_Strict):
    email: str
    name: str
    timezone: str
    language_preference: str
    memory_profile: dict[str, Any]


class SampleConversation(_Strict):
    key: str
    title: str | None
    status: str
    days_ago: int = Field(ge=0)
    turn_context: dict[str, Any] | None
    messages: list[tuple[str, str]]


class SampleInteraction(_Strict):
    """What the sample user does in the web app once their memory exists: a correction of a memory (named by its
    title) or a reflection."""

    key: str
    type: str
    target_title: str | None
    text: str


class SampleFile(_Strict):
    user: SampleUser
    conversations: list[SampleConversation]
    later_conversations: list[SampleConversation] = Field(default_factory=list)
    """Told after the others were remembered (the demo seeds them once those are ingested), so they can retell an
    earlier memory or change it."""
    interactions: list[SampleInteraction] = Field(default_factory=list)


class SeededConversation(NamedTuple):
    key: str
    conversation_id: str
    status: str
    message_count: int


@dataclass(frozen=True)
class SeededSample:
    """What the database holds for the sample user after seeding, and what this run added."""

    user_id: str
    email: str
    conversations: list[SeededConversation]
    created_keys: list[str]
    user_created: bool

    @property
    def already_present(self) -> bool:
        return not self.user_created and not self.created_keys


def sample_id(*parts: str) -> str:
    """The deterministic id of a sample row: uuid5 of the namespace and the parts joined by '/'."""
    return str(uuid.uuid5(SAMPLE_NAMESPACE, "/".join(parts)))


def load_sample(path: Path = SAMPLE_FILE) -> SampleFile:
    return SampleFile.model_validate_json(path.read_text(encoding="utf-8"))


async def seed_sample_user(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    *,
    email: str | None = None,
    now: datetime | None = None,
    path: Path = SAMPLE_FILE,
    later: bool = False,
) -> SeededSample:
    """Load the sample user (under `email`, default the file's) in one transaction, then their turn contexts.

    Conversations start `days_ago` days before `now`, an hour earlier plus a minute per position in the file so
    that same-day conversations keep their order and every message lies in the past. With `later`, the
    conversations told later (`later_conversations`, after the first ones in that order) instead of the first.
    """
    sample = load_sample(path)
    wave, offset = (sample.later_conversations, len(sample.conversations)) if later else (sample.conversations, 0)
    email = email or sample.user.email
    now = now or datetime.now(UTC)
    user_id = sample_id(email)
    created_keys: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        # two seeders at once take turns, so the second finds the first one's rows instead of colliding with them
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"seed-sample:{email}")
        user_created = await users.get_user(conn, user_id) is None
        if user_created:
            await _create_user(conn, user_id, email, sample.user)
        for position, conversation in enumerate(wave, start=offset):
            conversation_id = sample_id(email, conversation.key)
            if await conversations.get_conversation(conn, user_id, conversation_id) is None:
                start = now - timedelta(days=conversation.days_ago, hours=1) + timedelta(minutes=position)
                await _create_conversation(conn, user_id, conversation_id, email, conversation, start)
                created_keys.append(conversation.key)
        seeded = [
            await _seeded(conn, user_id, conversation.key, sample_id(email, conversation.key)) for conversation in wave
        ]
    for conversation in wave:
        if conversation.turn_context is not None:
            package = TurnContextPackage.model_validate(conversation.turn_context)
            await write_turn_context(redis, sample_id(email, conversation.key), package)
    return SeededSample(user_id, email, seeded, created_keys, user_created)


async def seed_sample_interactions(pool: asyncpg.Pool, email: str | None = None, path: Path = SAMPLE_FILE) -> int:
    """Write the sample user's interactions as the web app would (a correction names the memory unit of its
    `target_title`); returns how many were new (a rerun writes none). SampleError when a memory it corrects does not
    exist yet (their conversations are not ingested)."""
    sample = load_sample(path)
    email = email or sample.user.email
    user_id = sample_id(email)
    units = {unit.title: unit.muid for unit in await memory_units.list_memory_units(pool, user_id)}
    ids = [sample_id(email, "interaction", interaction.key) for interaction in sample.interactions]
    written = await interaction_logs.existing_interaction_ids(pool, user_id, ids)
    rows = []
    for position, interaction in enumerate(sample.interactions):
        if ids[position] in written:
            continue  # its memory may have been corrected since: it no longer goes by the title it had
        target = None
        if interaction.target_title is not None:
            if interaction.target_title not in units:
                raise SampleError(f"the sample user has no memory {interaction.target_title!r} yet; ingest first")
            target = units[interaction.target_title]
        rows.append(
            NewInteraction(
                interaction_id=ids[position],
                interaction_type=interaction.type,
                timestamp=datetime.now(UTC) + timedelta(milliseconds=position),
                target_entity_type="MemoryUnit" if target else None,
                target_entity_id=target,
                content_text=interaction.text,
            )
        )
    return await interaction_logs.insert_interactions(pool, user_id, rows)


async def _create_user(conn: asyncpg.Connection, user_id: str, email: str, user: SampleUser) -> None:
    try:
        async with conn.transaction():  # a savepoint: the error below must not poison the outer transaction
            await users.create_user(
                conn,
                user_id,
                email=email,
                name=user.name,
                timezone=user.timezone,
                language_preference=user.language_preference,
                memory_profile=user.memory_profile,
            )
    except asyncpg.UniqueViolationError:
        raise SampleError(
            f"{email} already belongs to a user that seed-sample did not create; pick another --user-email"
        ) from None


async def _create_conversation(
    conn: asyncpg.Connection,
    user_id: str,
    conversation_id: str,
    email: str,
    sample: SampleConversation,
    start: datetime,
) -> None:
    last = start + MESSAGE_SPACING * max(len(sample.messages) - 1, 0)
    await conversations.create_conversation(
        conn,
        user_id,
        conversation_id=conversation_id,
        title=sample.title,
        start_time=start,
        ended_at=None if sample.status == "active" else last,
        status=sample.status,
        metadata={"sample": True, "sample_key": sample.key},
    )
    for index, (role, content) in enumerate(sample.messages):
        await conversations.add_message(
            conn,
            user_id,
            conversation_id,
            role=role,
            content=content,
            timestamp=start + MESSAGE_SPACING * index,
            message_id=sample_id(email, sample.key, str(index)),
        )


async def _seeded(conn: asyncpg.Connection, user_id: str, key: str, conversation_id: str) -> SeededConversation:
    stored = await conversations.get_conversation(conn, user_id, conversation_id)
    assert stored is not None  # created above or found, in this transaction
    messages = await conversations.list_messages(conn, user_id, conversation_id)
    return SeededConversation(key, conversation_id, stored.status, len(messages))
