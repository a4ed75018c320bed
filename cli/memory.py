"""`memory history USER [ENTITY]`: how a user's memory was revised, newest first (issue 19).

Each row is one revision (public.memory_revisions): a memory unit retold or updated by a later conversation, a
concept's description changed, the user's correction; with what it replaced, what it set, when and why. The web app
reads the same rows (docs/contract.md, "Memory history").
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import typer

from cli.common import CommandError, backends, console, fail, hint, print_json, require_migrated, run_async
from cli.tables import Col, show
from store.postgres import create_pool
from store.repos import memory_revisions
from store.repos.memory_revisions import MemoryRevisionRecord

memory_app = typer.Typer(
    help="A user's memory as it changed: every revision with what it replaced, when and why.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _check_id(name: str, value: str) -> None:
    if not value.strip() or "\x00" in value or len(value) > 200:
        fail(f"{name} {value[:80]!r}: expected an id")


def _source(revision: MemoryRevisionRecord) -> str:
    if revision.source_conversation_id is not None:
        return f"conversation {revision.source_conversation_id}"
    if revision.source_interaction_id is not None:
        return f"interaction {revision.source_interaction_id}"
    return "(its source was deleted)"


def _values(values: dict[str, Any] | None) -> str:
    return "\n".join(f"{name}: {json.dumps(value, ensure_ascii=False)}" for name, value in (values or {}).items())


def revision_json(revision: MemoryRevisionRecord) -> dict[str, Any]:
    return {
        "revision_id": revision.revision_id,
        "entity_type": revision.entity_type,
        "entity_id": revision.entity_id,
        "kind": revision.kind,
        "before": revision.before,
        "after": revision.after,
        "source_conversation_id": revision.source_conversation_id,
        "source_interaction_id": revision.source_interaction_id,
        "created_at": revision.created_at.astimezone(UTC).isoformat(),
    }


async def _history(user: str, entity: str | None, limit: int) -> list[MemoryRevisionRecord]:
    database_url = backends().database_url
    await require_migrated(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        if await pool.fetchval("SELECT 1 FROM users WHERE user_id = $1", user) is None:
            raise CommandError(f"no user {user!r} in the database")
        return await memory_revisions.list_revisions(pool, user, entity_id=entity, limit=limit)
    finally:
        await pool.close()


@memory_app.command("history")
def history_command(
    user: str = typer.Argument(..., help="The user's id (users.user_id)."),
    entity: str | None = typer.Argument(None, help="One memory unit's or concept's id; default: all of them."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="How many revisions, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """USER's memory revisions, newest first: a memory unit retold (one unit, enriched) or updated by a later
    conversation, a concept's changed description, a correction the user made in the web app; each with the values
    it replaced (before), the ones it set (after), when, and its source (a conversation or an interaction). Exit 2
    for a user id the database does not hold.

    Examples:

    \b
      run.py memory history u_123
      run.py memory history u_123 7f0c2d9e-… --json
    """
    _check_id("USER", user)
    if entity is not None:
        _check_id("ENTITY", entity)
    found = run_async(_history(user, entity, limit))
    if as_json:
        print_json([revision_json(revision) for revision in found])
        return
    if not found:
        hint(f"no revision of {'entity ' + entity if entity else 'any memory'} of user {user} yet")
        return
    rows = [
        (
            revision.created_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            f"{revision.kind} {revision.entity_type}",
            revision.entity_id,
            _values(revision.before),
            _values(revision.after),
            _source(revision),
        )
        for revision in found
    ]
    columns = [Col("when", key=True), Col("kind"), Col("entity", key=True), Col("before"), Col("after"), Col("why")]
    show(console, columns, rows)
