"""runtime.consumed_interactions: what the corrections job made of each interaction_logs row the web app wrote (a
correction, feedback on a card, a reflection), and the read of those rows.

Orrery never changes the web app's interaction_logs rows, so their state is kept here, one row per interaction:
`pending` once a run of the job claimed it (before its one LLM call), then `applied`, `ignored` or `failed`, settled in
the transaction that writes the batch's revisions (store/corrections_writes.py) or by the job's dead hook. A rerun
after a success finds nothing pending; a rerun after a crash takes the same pending rows again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from store.postgres import Executor
from store.repos._base import JsonObject, Record, UtcDatetime, row_count

SETTLED_STATES = ("applied", "ignored", "failed")


class InteractionRecord(Record):
    """An interaction_logs row (docs/contract.md, "The user's corrections")."""

    interaction_id: str
    user_id: str
    timestamp: UtcDatetime
    interaction_type: str
    target_entity_id: str | None
    target_entity_type: str | None
    content_text: str | None
    content_structured: JsonObject
    metadata: JsonObject


async def claim_interactions(
    db: Executor, user_id: str, job_id: str, types: Sequence[str], *, limit: int
) -> list[InteractionRecord]:
    """Claim the user's interactions of `types` no run has claimed yet, and return every one of theirs still pending
    (these and any a crashed run left), oldest first, `limit` at most."""
    await db.execute(
        "INSERT INTO runtime.consumed_interactions (interaction_id, user_id, state, job_id) "
        "SELECT i.interaction_id, $1, 'pending', $2 FROM interaction_logs i "
        "WHERE i.user_id = $1 AND i.interaction_type = ANY($3::text[]) AND NOT EXISTS "
        "(SELECT 1 FROM runtime.consumed_interactions c WHERE c.interaction_id = i.interaction_id) "
        "ORDER BY i.timestamp, i.interaction_id LIMIT $4 ON CONFLICT (interaction_id) DO NOTHING",
        user_id,
        job_id,
        list(types),
        limit,
    )
    rows = await db.fetch(
        "SELECT i.* FROM interaction_logs i JOIN runtime.consumed_interactions c USING (interaction_id) "
        "WHERE c.user_id = $1 AND i.user_id = $1 AND c.state = 'pending' "
        "ORDER BY i.timestamp, i.interaction_id LIMIT $2",
        user_id,
        limit,
    )
    return [InteractionRecord.from_row(row) for row in rows]


async def lock_pending(db: Executor, user_id: str, interaction_ids: Sequence[str]) -> set[str]:
    """Which of these are the user's interactions still pending, their rows locked until the transaction ends: the
    ones a write may apply (one settled by a run that finished first, or another user's, is not)."""
    rows = await db.fetch(
        "SELECT interaction_id FROM runtime.consumed_interactions WHERE user_id = $1 AND state = 'pending' "
        "AND interaction_id = ANY($2::text[]) ORDER BY interaction_id FOR UPDATE",
        user_id,
        list(interaction_ids),
    )
    return {row["interaction_id"] for row in rows}


async def settle_interactions(
    db: Executor, user_id: str, outcomes: Mapping[str, tuple[str, str | None]], *, at: datetime
) -> int:
    """Settle these of the user's pending interactions: interaction id → (state, reason). Returns how many changed;
    one already settled (a rerun) is left as it was."""
    if not outcomes:
        return 0
    if bad := {state for state, _ in outcomes.values()} - set(SETTLED_STATES):
        raise ValueError(f"an interaction is settled as one of {SETTLED_STATES}, not {sorted(bad)}")
    status = await db.execute(
        "UPDATE runtime.consumed_interactions c SET state = o.state, reason = o.reason, settled_at = $2 "
        "FROM unnest($3::text[], $4::text[], $5::text[]) AS o(interaction_id, state, reason) "
        "WHERE c.user_id = $1 AND c.interaction_id = o.interaction_id AND c.state = 'pending'",
        user_id,
        at,
        list(outcomes),
        [state for state, _ in outcomes.values()],
        [reason for _, reason in outcomes.values()],
    )
    return row_count(status)


async def fail_pending(db: Executor, user_id: str, reason: str, *, at: datetime) -> int:
    """Settle every pending interaction of the user as failed (the job's run died): the next run does not spend
    another LLM call on a batch that cannot succeed. Returns how many."""
    status = await db.execute(
        "UPDATE runtime.consumed_interactions SET state = 'failed', reason = $2, settled_at = $3 "
        "WHERE user_id = $1 AND state = 'pending'",
        user_id,
        reason,
        at,
    )
    return row_count(status)


async def users_with_new_interactions(db: Executor, types: Sequence[str], *, limit: int) -> list[str]:
    """The users with an interaction of `types` no run has settled (new, or pending after a crash): the sweep
    enqueues the job for each. Without a user id by design: it looks at every user, like the other sweeps."""
    rows = await db.fetch(
        "SELECT DISTINCT i.user_id FROM interaction_logs i "
        "LEFT JOIN runtime.consumed_interactions c USING (interaction_id) "
        "WHERE i.interaction_type = ANY($1::text[]) AND (c.interaction_id IS NULL OR c.state = 'pending') "
        "ORDER BY i.user_id LIMIT $2",
        list(types),
        limit,
    )
    return [row["user_id"] for row in rows]
