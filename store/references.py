"""Whether the users, conversations and media items a job's arguments name exist: `run.py trigger` refuses a job
naming one that does not at once, instead of enqueueing a run that can only end as a dead letter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from store.postgres import Executor

_LOOKUPS = {
    "user_id": ("user", "SELECT 1 FROM users WHERE user_id = $1"),
    "conversation_id": ("conversation", "SELECT 1 FROM conversations WHERE id = $1"),
    "media_id": ("media item", "SELECT 1 FROM media_items WHERE media_id = $1"),
}
"""Argument name -> (what it names, the query finding it). Every job names users, conversations and media items this
way."""


async def missing(db: Executor, args: Mapping[str, Any]) -> list[str]:
    """One line per argument naming a user, conversation or media item Postgres does not hold (none: all exist)."""
    problems = []
    for name, (what, query) in _LOOKUPS.items():
        value = args.get(name)
        if isinstance(value, str) and await db.fetchval(query, value) is None:
            problems.append(f"{name}: no {what} {value!r} in Postgres")
    return problems
