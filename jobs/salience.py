"""The salience refresh: every user's active concepts get the salience they have today (core/salience.py).

Ingestion and the insight keep the concepts they touch current in their own transactions (store/salience.py); what
none of them sees is time passing, which lowers the recency part of every concept nobody mentions. So once a day
this job recomputes each user's concepts, one user per transaction with the outbox rows of the concepts whose value
moved (at two decimals, few do on a given day), and the graph and vector stores follow. The same job gives existing
concepts their first value after an upgrade: `run.py trigger salience_refresh` does it at once.

Idempotent because (DESIGN.md invariant 2): it writes values computed from the rows, only where they differ; a
second run the same day finds nothing to change, and one cut short by a crash is finished by the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.vocabulary import NodeLabel
from jobs.runtime.context import JobContext
from jobs.runtime.registry import BATCH, JobSpec
from jobs.sync import follow_commit
from store import outbox
from store.repos._base import transaction, utc_now
from store.salience import refresh_salience, users_with_concepts


class SalienceRefreshArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(500, ge=1, le=100_000, description="Users read per page (each refreshed in its own transaction).")


async def refresh_every_user(ctx: JobContext, args: SalienceRefreshArgs) -> Mapping[str, Any]:
    """Walk the users with active concepts by id; per user, recompute, write what changed and its outbox rows."""
    now = utc_now()
    users = changed = 0
    after: str | None = None
    while page := await users_with_concepts(ctx.pool, after=after, limit=args.page):
        for user_id in page:
            async with transaction(ctx.pool) as conn:
                moved = await refresh_salience(conn, user_id, now=now)
                await outbox.record_changes(conn, user_id, outbox.changes(NodeLabel.CONCEPT, moved))
            users += 1
            changed += len(moved)
        after = page[-1]
    if changed:
        await follow_commit(ctx)  # the stores take the new values (no embedding: only the importance moved)
    ctx.log.info("salience.refreshed", users=users, concepts_changed=changed)
    return {"users": users, "concepts_changed": changed}


SALIENCE_REFRESH = JobSpec(
    name="salience_refresh",
    args_model=SalienceRefreshArgs,
    handler=refresh_every_user,
    queue=BATCH,
    timeout_s=3600,
    max_tries=3,
    backoff_s=300,
    dedupe_key="salience_refresh",
    cron="47 4 * * *",
    description=(
        "Recompute every user's concept salience (mentions, recency, connections) as of today, and sync the"
        " changed ones.\n"
        "Ingestion and insight keep the concepts they touch current; this catches up with time passing, and gives"
        " existing concepts their first value (`run.py trigger salience_refresh`)."
    ),
)
