"""Proactive prompts reach the user through the next-conversation package (docs/contract.md, "Proactive prompts"):
the best pending prompts ride in it, an expired one never does, and the web app's documented statements deliver
and answer a prompt once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from clients.contract import NextConversationContextPackage, PackagedPrompt
from store.proactive_prompts_writes import NewPrompt, expire_prompts, write_prompts
from store.repos import proactive_prompts, users
from tests.store import testrows

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PACKAGE: dict[str, Any] = {
    "proactive_greeting": "Welcome back!",
    "unresolved_topics": [],
    "suggested_focus": None,
    "source_conversation_id": "c-1",
    "source_conversation_start_time": "2026-11-19T08:00:00+00:00",
    "generated_at": "2026-11-19T09:00:00+00:00",
    "proactive_prompts": [],
}
DELIVER = (
    "UPDATE proactive_prompts SET status = 'delivered', delivered_at = now() "
    "WHERE prompt_id = $1 AND user_id = $2 AND status = 'pending'"
)
ANSWER = (
    "UPDATE proactive_prompts SET status = 'answered' WHERE prompt_id = $1 AND user_id = $2 AND status = 'delivered'"
)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> str:
    created = await users.create_user(pool, "prompt-user", email="prompts@example.org")
    await users.record_ingestion(pool, created.user_id, concepts_created=0, next_context=PACKAGE)
    return created.user_id


async def _write(pool: asyncpg.Pool, user: str, run_key: str, *prompts: tuple[str, int], expires_at: datetime) -> None:
    await write_prompts(
        pool,
        user,
        run_key,
        [
            NewPrompt(prompt_text=text, priority=priority, source_agent="ProactivePromptAgent")
            for text, priority in prompts
        ],
        cap=5,
        expire_before=NOW - timedelta(days=14),
        now=NOW,
        expires_at=expires_at,
    )


async def _ids(pool: asyncpg.Pool, user: str) -> dict[str, str]:
    return {p.prompt_text: p.prompt_id for p in await proactive_prompts.list_proactive_prompts(pool, user)}


async def _package(pool: asyncpg.Pool, user: str) -> NextConversationContextPackage:
    found = await pool.fetchval("SELECT next_conversation_context_package FROM users WHERE user_id = $1", user)
    return NextConversationContextPackage.model_validate(found)


async def test_the_best_three_pending_prompts_ride_in_the_package_in_delivery_order(
    pool: asyncpg.Pool, user: str
) -> None:
    later = NOW + timedelta(days=14)
    await _write(pool, user, "daily:1", ("Low?", 2), ("Top?", 9), ("Mid?", 5), ("High?", 7), expires_at=later)
    package = await _package(pool, user)
    assert [p.prompt_text for p in package.proactive_prompts] == ["Top?", "High?", "Mid?"]
    assert package.proactive_greeting == "Welcome back!"  # the package's other keys are kept
    assert all(datetime.fromisoformat(p.expires_at) == later for p in package.proactive_prompts)
    stored = {p.prompt_id: p for p in await proactive_prompts.list_proactive_prompts(pool, user, status="pending")}
    assert {p.prompt_id for p in package.proactive_prompts} <= set(stored)


async def test_an_expired_prompt_never_enters_a_package_and_expiry_takes_it_out(pool: asyncpg.Pool, user: str) -> None:
    await _write(pool, user, "daily:1", ("Stale?", 9), expires_at=NOW - timedelta(seconds=1))
    assert (await _package(pool, user)).proactive_prompts == []  # pending in the table, but past its expiry
    await _write(pool, user, "daily:2", ("Fresh?", 3), expires_at=NOW + timedelta(hours=1))  # expires "Stale?"
    stale = await testrows.get_proactive_prompt(pool, user, (await _ids(pool, user))["Stale?"])
    assert stale is not None and stale.status == "expired"
    assert [p.prompt_text for p in (await _package(pool, user)).proactive_prompts] == ["Fresh?"]
    # an hour later the fresh one expired too: the expiry marks it and the package loses it in one transaction
    assert await expire_prompts(pool, user, created_before=NOW - timedelta(days=14), now=NOW + timedelta(hours=2)) == 1
    assert (await _package(pool, user)).proactive_prompts == []
    assert {p.status for p in await proactive_prompts.list_proactive_prompts(pool, user)} == {"expired"}


async def test_the_web_app_delivers_a_prompt_once_then_marks_it_answered(pool: asyncpg.Pool, user: str) -> None:
    await _write(pool, user, "daily:1", ("Top?", 9), ("Next?", 5), expires_at=NOW + timedelta(days=1))
    first: PackagedPrompt = (await _package(pool, user)).proactive_prompts[0]
    assert await pool.execute(ANSWER, first.prompt_id, user) == "UPDATE 0"  # not delivered yet
    assert await pool.execute(DELIVER, first.prompt_id, user) == "UPDATE 1"
    assert await pool.execute(DELIVER, first.prompt_id, user) == "UPDATE 0"  # a second tab's claim finds it taken
    assert await pool.execute(DELIVER, first.prompt_id, "someone-else") == "UPDATE 0"
    assert await pool.execute(ANSWER, first.prompt_id, user) == "UPDATE 1"
    row = await testrows.get_proactive_prompt(pool, user, first.prompt_id)
    assert row is not None and row.status == "answered" and row.delivered_at is not None
    # the next refresh (a prompts run that writes nothing new) leaves only the undelivered one in the package
    await _write(pool, user, "daily:1", expires_at=NOW + timedelta(days=1))
    assert [p.prompt_text for p in (await _package(pool, user)).proactive_prompts] == ["Next?"]


async def test_the_demo_delivery_claims_like_the_web_app(pool: asyncpg.Pool, user: str) -> None:
    await _write(pool, user, "daily:1", ("Top?", 9), expires_at=NOW + timedelta(days=1))
    first = (await _package(pool, user)).proactive_prompts[0]
    assert await proactive_prompts.mark_delivered(pool, user, first.prompt_id, at=NOW)
    assert not await proactive_prompts.mark_delivered(pool, user, first.prompt_id, at=NOW)


async def test_a_user_without_a_package_keeps_none_until_a_conversation_writes_one(pool: asyncpg.Pool) -> None:
    created = await users.create_user(pool, "no-package", email="none@example.org")
    await _write(pool, created.user_id, "daily:1", ("Top?", 9), expires_at=NOW + timedelta(days=1))
    assert (
        await pool.fetchval("SELECT next_conversation_context_package FROM users WHERE user_id = $1", created.user_id)
        is None
    )
