"""Keeping `concepts.salience` current: its inputs read from Postgres, the formula applied (core/salience.py), the
changed values written through the concepts repository.

Who calls it, and why inside their transactions: ingestion's and the insight's writes refresh the concepts they
touched and record their outbox rows in one step (`refresh_and_record`), so the new values commit with the relationships
they are computed from and reach the graph and vector stores through the same outbox rows, with no second
transaction or sync round. It costs each write one read and one update over its few concepts, never the user's
whole graph. Salience also decays with time, which no write sees: the daily `salience_refresh` job recomputes every
user's active concepts (`refresh_salience` with no ids), which is also how existing concepts get their first value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from core.salience import salience
from core.vocabulary import NodeLabel
from store import outbox
from store.postgres import Executor
from store.repos import concepts
from store.repos._base import apply_together, from_db, utc_now
from store.sync import TRUTH_EDGE_TYPES

_INPUTS = """
SELECT c.concept_id, c.created_at, u.mentions, u.last_mentioned, k.connections
FROM concepts c
CROSS JOIN LATERAL (
    SELECT count(DISTINCT m.muid) AS mentions, max(m.ingestion_ts) AS last_mentioned
    FROM (
        SELECT e.source_id AS muid FROM runtime.knowledge_edges e
        WHERE e.user_id = c.user_id AND e.target_id = c.concept_id AND e.source_type = 'MemoryUnit'
          AND e.relationship_type = ANY($3::text[])
        UNION ALL
        SELECT e.target_id FROM runtime.knowledge_edges e
        WHERE e.user_id = c.user_id AND e.source_id = c.concept_id AND e.target_type = 'MemoryUnit'
          AND e.relationship_type = ANY($3::text[])
    ) AS linked
    JOIN memory_units m ON m.user_id = c.user_id AND m.muid = linked.muid
) AS u
CROSS JOIN LATERAL (
    SELECT count(DISTINCT other.concept_id) AS connections
    FROM (
        SELECT e.source_id AS concept_id FROM runtime.knowledge_edges e
        WHERE e.user_id = c.user_id AND e.target_id = c.concept_id AND e.source_type = 'Concept'
          AND e.relationship_type = ANY($3::text[])
        UNION ALL
        SELECT e.target_id FROM runtime.knowledge_edges e
        WHERE e.user_id = c.user_id AND e.source_id = c.concept_id AND e.target_type = 'Concept'
          AND e.relationship_type = ANY($3::text[])
    ) AS other
) AS k
WHERE c.user_id = $1 AND c.status = 'active' AND ($2::text[] IS NULL OR c.concept_id = ANY($2::text[]))
"""
"""Per active concept: memory units related to it and the newest one's ingestion, and the concepts related to it
(each side of runtime.knowledge_edges on its own index; only the relationships agents extracted)."""


async def compute_salience(
    db: Executor, user_id: str, concept_ids: Iterable[str] | None, *, now: datetime
) -> dict[str, float]:
    """The salience each of the user's active concepts (those of `concept_ids`, every one when None) has at `now`."""
    ids = None if concept_ids is None else sorted(set(concept_ids))
    if ids == []:
        return {}
    rows = await db.fetch(_INPUTS, user_id, ids, TRUTH_EDGE_TYPES)
    return {
        row["concept_id"]: salience(
            int(row["mentions"]),
            int(row["connections"]),
            from_db(row["last_mentioned"] or row["created_at"]),
            now,
        )
        for row in rows
    }


async def refresh_salience(
    db: Executor, user_id: str, concept_ids: Iterable[str] | None = None, *, now: datetime | None = None
) -> list[str]:
    """Compute and store the salience of the user's active concepts (those of `concept_ids`, every one when None);
    returns the ids whose value changed (they need outbox rows, unless the caller records them anyway)."""
    values = await compute_salience(db, user_id, concept_ids, now=now or utc_now())
    return await concepts.set_salience(db, user_id, values)


async def refresh_and_record(db: Executor, user_id: str, changed: Sequence[outbox.Change]) -> None:
    """Within a write's transaction, last: refresh the salience of the concepts among `changed` and record `changed`
    in the outbox. Two round trips: the salience inputs read (after the write's relationships, which it counts),
    then the new values and the outbox rows in one statement; the concepts touched are among `changed` already, so
    their new values reach the stores through the same rows."""
    touched = [change.entity_id for change in changed if change.label is NodeLabel.CONCEPT]
    values = await compute_salience(db, user_id, touched, now=utc_now())
    await apply_together(db, [concepts.setting_salience(user_id, values), outbox.recording(user_id, changed)])


async def users_with_concepts(db: Executor, *, after: str | None, limit: int) -> list[str]:
    """Users with an active concept, by id from after `after`: the daily refresh walks every user in pages. A sweep
    across users, by nature."""
    rows = await db.fetch(
        "SELECT DISTINCT user_id FROM concepts WHERE status = 'active' AND ($1::text IS NULL OR user_id > $1) "
        "ORDER BY user_id LIMIT $2",
        after,
        limit,
    )
    return [row["user_id"] for row in rows]
