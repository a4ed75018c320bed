"""Proactive prompts: what the agent reads, the stale ones expiring, and the new ones written once, deduplicated
and capped.

Why the write takes a per-user lock and checks again: two runs for one user can meet (the cycle chain and the daily
schedule), and pending prompts change between the read and the write (the web app delivers them). Under the lock the
write sees the pending prompts as they are, drops any new prompt whose normalized text repeats a pending one (or an
earlier one of the same answer), and keeps the highest-priority ones that fit under the user's cap. Each run has a
key (`cycle:<cycle start>` or `daily:<date>`); prompt ids derive from the user, the key and the normalized text,
and a run whose key already wrote prompts writes nothing, so a rerun adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from core.cycle import CYCLE_NAMESPACE, MEMORY_LEARNED_AT, Cycle
from core.vocabulary import normalize_concept_name
from store.postgres import Executor
from store.repos import proactive_prompts, users
from store.repos._base import serialized, to_db, transaction
from store.repos.proactive_prompts import PACKAGED_PROMPTS, PENDING, NewPromptRow


def cycle_run_key(cycle: Cycle) -> str:
    return f"cycle:{cycle.stamp}"


def daily_run_key(day: date) -> str:
    return f"daily:{day:%Y%m%d}"


def normalized_prompt(text: str) -> str:
    """A prompt's identity for deduplication: case, spacing and punctuation do not make a new question."""
    return normalize_concept_name(text)


def prompt_id(user_id: str, run_key: str, normalized: str) -> str:
    return str(uuid.uuid5(CYCLE_NAMESPACE, f"{user_id}:prompt:{run_key}:{normalized}"))


async def packaged_prompts(db: Executor, user_id: str, *, now: datetime) -> list[dict[str, Any]]:
    """The `proactive_prompts` of the next-conversation package: the best deliverable prompts (pending, not expired),
    in the shape docs/contract.md documents. Callers hold the user's row lock (a package write) so what they write is
    what is pending when they commit."""
    return [
        {
            "prompt_id": prompt.prompt_id,
            "prompt_text": prompt.prompt_text,
            "priority": prompt.priority,
            "created_at": prompt.created_at.isoformat(),
            "expires_at": expires.isoformat(),
        }
        for prompt in await proactive_prompts.deliverable(db, user_id, now=now, limit=PACKAGED_PROMPTS)
        if (expires := proactive_prompts.expires_at(prompt)) is not None
    ]


async def refresh_package_prompts(db: Executor, user_id: str, *, now: datetime) -> None:
    """Put the user's deliverable prompts into their package (the caller holds the user's row lock)."""
    await users.set_package_prompts(db, user_id, await packaged_prompts(db, user_id, now=now))


async def expire_prompts(db: Executor, user_id: str, *, created_before: datetime, now: datetime) -> int:
    """Expire the user's stale pending prompts and take them out of the package, in one transaction."""
    async with transaction(db) as conn:
        if not await users.lock_user(conn, user_id):
            return 0
        expired = await proactive_prompts.expire_pending(conn, user_id, created_before=created_before, now=now)
        await refresh_package_prompts(conn, user_id, now=now)
    return expired


@dataclass(frozen=True)
class PromptSource:
    """The rows the agent's material comes from."""

    memory_profile: dict[str, Any] | None
    next_context: dict[str, Any] | None
    memories: list[dict[str, Any]]
    insights: list[dict[str, Any]]
    pending: list[str]


async def read_prompt_source(
    db: Executor, user_id: str, *, insights_since: datetime, memory_limit: int, insight_limit: int = 3
) -> PromptSource | None:
    """The profile, the next-conversation package, the memory units learned last (core/cycle.MEMORY_LEARNED_AT: a
    memory of last year told today is news today), the insight artifacts since `insights_since` and the pending
    prompts' texts. None when the user does not exist."""
    user = await db.fetchrow(
        "SELECT memory_profile, next_conversation_context_package FROM users WHERE user_id = $1", user_id
    )
    if user is None:
        return None
    memories = await db.fetch(
        "SELECT muid, title, content, importance_score FROM memory_units WHERE user_id = $1 "
        f"ORDER BY {MEMORY_LEARNED_AT} DESC, muid LIMIT $2",
        user_id,
        memory_limit,
    )
    insights = await db.fetch(
        "SELECT artifact_id, title, content_narrative FROM derived_artifacts WHERE user_id = $1 "
        "AND artifact_type <> 'cycle_report' AND created_at >= $2 ORDER BY created_at DESC, artifact_id LIMIT $3",
        user_id,
        to_db(insights_since),
        insight_limit,
    )
    pending = await db.fetch(
        "SELECT prompt_text FROM proactive_prompts WHERE user_id = $1 AND status = $2 "
        "ORDER BY priority DESC, created_at, prompt_id",
        user_id,
        PENDING,
    )
    profile, package = user["memory_profile"], user["next_conversation_context_package"]
    return PromptSource(
        memory_profile=profile if isinstance(profile, dict) else None,
        next_context=package if isinstance(package, dict) else None,
        memories=[dict(row) for row in memories],
        insights=[dict(row) for row in insights],
        pending=[row["prompt_text"] for row in pending],
    )


@dataclass(frozen=True)
class NewPrompt:
    prompt_text: str
    priority: int
    source_agent: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptsWriteSummary:
    outcome: str  # "written", "already_written"
    written: int = 0
    duplicates: int = 0
    over_cap: int = 0
    expired: int = 0
    prompt_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "written": self.written,
            "duplicates": self.duplicates,
            "over_cap": self.over_cap,
            "expired": self.expired,
        }


async def write_prompts(
    db: Executor,
    user_id: str,
    run_key: str,
    prompts: Sequence[NewPrompt],
    *,
    cap: int,
    expire_before: datetime,
    now: datetime,
    expires_at: datetime,
) -> PromptsWriteSummary:
    """Expire stale prompts, then insert the new ones (deliverable until `expires_at`) that repeat no pending prompt
    and fit under `cap` (highest priority first), and put the best pending ones into the user's next-conversation
    package, all under the user's prompt lock and row lock; nothing new when this run's key already wrote prompts."""
    summary = PromptsWriteSummary(outcome="written")
    async with serialized(db, f"proactive_prompts:{user_id}") as conn:
        await users.lock_user(conn, user_id)  # a package write (ingestion, insight) and this one take turns
        summary.expired = await proactive_prompts.expire_pending(conn, user_id, created_before=expire_before, now=now)
        if await proactive_prompts.run_wrote_prompts(conn, user_id, run_key):
            summary.outcome = "already_written"
            await refresh_package_prompts(conn, user_id, now=now)
            return summary
        pending = await proactive_prompts.pending_texts(conn, user_id)
        seen = {normalized_prompt(text) for text in pending}
        free = max(cap - len(pending), 0)
        rows: list[NewPromptRow] = []
        for prompt in sorted(prompts, key=lambda p: -p.priority):  # stable: the model's order breaks ties
            normalized = normalized_prompt(prompt.prompt_text)
            if not normalized or normalized in seen:
                summary.duplicates += 1
                continue
            if len(rows) >= free:
                summary.over_cap += 1
                continue
            seen.add(normalized)
            row = NewPromptRow(
                prompt_id=prompt_id(user_id, run_key, normalized),
                prompt_text=prompt.prompt_text,
                source_agent=prompt.source_agent,
                priority=prompt.priority,
                metadata={
                    **prompt.metadata,
                    "run_key": run_key,
                    "normalized_text": normalized,
                    "expires_at": expires_at.isoformat(),
                },
            )
            rows.append(row)
            summary.prompt_ids.append(row.prompt_id)
        await proactive_prompts.insert_prompts(conn, user_id, rows)
        summary.written = len(rows)
        await refresh_package_prompts(conn, user_id, now=now)
    return summary


@dataclass(frozen=True)
class DailyCandidate:
    """A user the daily schedule may ask prompts for, with what decides it in their own time (jobs/proactive_prompts.py
    keeps those whose local morning it is and whose cycle is not due)."""

    user_id: str
    cycle: Cycle
    timezone: str | None


async def users_for_daily_prompts(db: Executor, *, now: datetime) -> list[DailyCandidate]:
    """Who the daily schedule may ask prompts for at `now`: active users with a memory unit ingested in the last day
    whose cycle did not start within the last day (the chain just wrote their prompts)."""
    rows = await db.fetch(
        "SELECT u.user_id, COALESCE(u.last_cycle_started_at, u.created_at) AS cycle_start, u.timezone "
        "FROM users u WHERE u.account_status = 'active' "
        "AND COALESCE(u.last_cycle_started_at, u.created_at) <= $1::timestamp - interval '1 day' "
        "AND EXISTS (SELECT 1 FROM memory_units m WHERE m.user_id = u.user_id "
        "AND m.ingestion_ts > $1::timestamp - interval '1 day') ORDER BY u.user_id",
        to_db(now),
    )
    return [
        DailyCandidate(
            row["user_id"], Cycle.of(row["user_id"], row["cycle_start"].replace(tzinfo=UTC)), row["timezone"]
        )
        for row in rows
    ]
