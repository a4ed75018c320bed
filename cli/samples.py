"""`seed-sample`: put the sample user and their conversations into the database (the demo and the tests use it)."""

from __future__ import annotations

import typer

from cli.common import CommandError, console, describe_backends, fail, migrated, print_json, run_async
from cli.tables import Col, show, styled
from store.postgres import create_pool
from store.redis import connect_redis
from store.samples.loader import SampleError, SeededSample, seed_sample_user


def seed_sample_command(
    user_email: str | None = typer.Option(
        None, "--user-email", help="Load the sample under this e-mail instead of the file's (a separate user)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table."),
) -> None:
    """Load the sample user with several conversations; running it again changes nothing. Prints the user's id
    and each conversation's id (what `trigger ingest --arg conversation_id=…` takes).

    Examples:

    \b
      run.py seed-sample
      run.py seed-sample --user-email sam@example.org --json
    """
    if user_email is not None and not _is_email(user_email):
        fail(f"--user-email {user_email[:80]!r}: expected one e-mail address like maya@example.org")
    found = migrated()

    async def _run() -> SeededSample:
        pool = await create_pool(found.database_url, min_size=1, max_size=2)
        try:
            redis = await connect_redis(found.redis_url)
            try:
                return await seed_sample_user(pool, redis, email=user_email)
            finally:
                await redis.aclose()
        except SampleError as exc:
            raise CommandError(str(exc)) from None
        finally:
            await pool.close()

    seeded = run_async(_run())
    if as_json:
        print_json(_as_json(seeded))
        return
    columns = [
        Col("conversation", key=True),
        Col("id", key=True),
        Col("status"),
        Col("messages", justify="right"),
        Col("this run"),
    ]
    rows = [
        (
            conversation.key,
            conversation.conversation_id,
            conversation.status,
            str(conversation.message_count),
            styled("[green]created[/]") if conversation.key in seeded.created_keys else "already present",
        )
        for conversation in seeded.conversations
    ]
    show(console, columns, rows, title=f"sample user {seeded.email}")
    console.print(f"user id: {seeded.user_id}", highlight=False, soft_wrap=True)
    if seeded.already_present:
        console.print("already present: nothing changed")
    else:
        console.print(f"created {len(seeded.created_keys)} conversations on {describe_backends(found)}")


MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit on a forward path; users.email is stored as given."""


def _is_email(text: str) -> bool:
    """One `@` between a non-empty local part and domain, printable, no spaces, not absurdly long."""
    local, at, domain = text.partition("@")
    return (
        bool(at and local and domain)
        and "@" not in domain
        and len(text) <= MAX_EMAIL_LENGTH
        and text.isprintable()
        and not any(char.isspace() for char in text)
    )


def _as_json(seeded: SeededSample) -> dict[str, object]:
    return {
        "user_id": seeded.user_id,
        "email": seeded.email,
        "already_present": seeded.already_present,
        "user_created": seeded.user_created,
        "conversations": [
            {**conversation._asdict(), "created": conversation.key in seeded.created_keys}
            for conversation in seeded.conversations
        ],
    }
