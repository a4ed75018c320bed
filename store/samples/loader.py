"""Load the sample user and their conversations, with ids that make a second run change nothing.

Ids are uuid5 of a fixed namespace and the user's e-mail (plus the conversation key, plus the message index), so
the same e-mail always maps to the same rows: a re-run finds them and leaves them as they are, including their
timestamps and any status ingestion has moved them to since.
"""

from __future__ import annotations

import mimetypes
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.media import MediaKind
from settings import get_settings
from store.context import TurnContextPackage, write_turn_context
from store.repos import conversations, interaction_logs, media_items, memory_units, users
from store.repos.interaction_logs import NewInteraction

SAMPLES_DIR = Path(__file__).parent
SAMPLE_FILE = SAMPLES_DIR / "sample_user.json"
PORTUGUESE_SAMPLE_FILE = SAMPLES_DIR / "sample_user_pt.json"
"""A second sample user who reads Portuguese (pt-PT) and lives in the Azores: the demo seeds both."""
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


class SampleAttachment(_Strict):
    """A file the user attached to one of the conversation's messages: `file` is relative to store/samples/ (it is
    copied into the media root, as the web app's upload would put it, and its media_items row points there)."""

    message: int = Field(ge=0, description="The index of the message it is attached to (0 = the first)")
    file: str
    type: MediaKind
    mime_type: str | None = None


class SampleConversation(_Strict):
    key: str
    title: str | None
    status: str
    days_ago: int = Field(ge=0)
    turn_context: dict[str, Any] | None
    messages: list[tuple[str, str]]
    attachments: list[SampleAttachment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _attached_to_a_message(self) -> SampleConversation:
        for attachment in self.attachments:
            if attachment.message >= len(self.messages):
                raise ValueError(f"{self.key}: {attachment.file} is attached to message {attachment.message}, not one")
            if not (SAMPLES_DIR / attachment.file).is_file():
                raise ValueError(f"{self.key}: no file {SAMPLES_DIR / attachment.file}")
        return self


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
    media_dir: Path | None = None,
    later: bool = False,
) -> SeededSample:
    """Load the sample user (under `email`, default the file's) in one transaction, then their turn contexts.

    Conversations start `days_ago` days before `now`, an hour earlier plus a minute per position in the file so
    that same-day conversations keep their order and every message lies in the past. Attachments are copied into
    `media_dir` (default: the media root workers read file:// URLs from, ORRERY_MEDIA_FILE_ROOT) under the user's
    id, and recorded `pending` in media_items with their message's media_ids, as the web app's upload would. With
    `later`, the conversations told later (`later_conversations`, after the first ones in that order) instead of
    the first.
    """
    sample = load_sample(path)
    wave, offset = (sample.later_conversations, len(sample.conversations)) if later else (sample.conversations, 0)
    email = email or sample.user.email
    now = now or datetime.now(UTC)
    user_id = sample_id(email)
    uploads = _upload_attachments(sample, email, user_id, media_dir or get_settings().resolved_media_root)
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
                await _create_conversation(conn, user_id, conversation_id, email, conversation, start, uploads)
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
    uploads: dict[tuple[str, str], str],
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
    attached: dict[int, list[str]] = {}
    for attachment in sample.attachments:
        media_id = sample_id(email, sample.key, "media", attachment.file)
        await media_items.insert_media_item(
            conn,
            user_id,
            kind=attachment.type,
            storage_url=uploads[(sample.key, attachment.file)],
            filename=Path(attachment.file).name,
            mime_type=attachment.mime_type or mimetypes.guess_type(attachment.file)[0],
            size_bytes=(SAMPLES_DIR / attachment.file).stat().st_size,
            media_id=media_id,
        )
        attached.setdefault(attachment.message, []).append(media_id)
    for index, (role, content) in enumerate(sample.messages):
        await conversations.add_message(
            conn,
            user_id,
            conversation_id,
            role=role,
            content=content,
            timestamp=start + MESSAGE_SPACING * index,
            message_id=sample_id(email, sample.key, str(index)),
            media_ids=attached.get(index, ()),
        )


def _upload_attachments(sample: SampleFile, email: str, user_id: str, media_dir: Path) -> dict[tuple[str, str], str]:
    """Copy every attachment's file into `media_dir`/<user id>/ (unless it is there already): (conversation key,
    file) → its file:// URL."""
    urls: dict[tuple[str, str], str] = {}
    for conversation in sample.conversations:
        for attachment in conversation.attachments:
            source = SAMPLES_DIR / attachment.file
            target = media_dir / user_id / f"{sample_id(email, conversation.key)[:8]}-{source.name}"
            if not target.is_file() or target.read_bytes() != source.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            urls[(conversation.key, attachment.file)] = target.resolve().as_uri()
    return urls


async def _seeded(conn: asyncpg.Connection, user_id: str, key: str, conversation_id: str) -> SeededConversation:
    stored = await conversations.get_conversation(conn, user_id, conversation_id)
    assert stored is not None  # created above or found, in this transaction
    messages = await conversations.list_messages(conn, user_id, conversation_id)
    return SeededConversation(key, conversation_id, stored.status, len(messages))
