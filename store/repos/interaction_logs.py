"""public.interaction_logs: the web app writes it (the user's corrections, card feedback, reflections and its own
events); Orrery reads it (store/repos/consumed_interactions.py) and writes only what the demo's sample user does in
the web app (store/samples/loader.py), through this one statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from store.postgres import Executor
from store.repos._base import row_count, to_db


class NewInteraction(BaseModel):
    interaction_id: str
    interaction_type: str
    timestamp: datetime
    target_entity_type: str | None = None
    target_entity_id: str | None = None
    content_text: str | None = None
    content_structured: Any = None


async def insert_interactions(db: Executor, user_id: str, rows: Sequence[NewInteraction]) -> int:
    """Write the user's interactions as the web app would; one whose id exists already (a rerun) is left as it is.
    Returns how many were new."""
    if not rows:
        return 0
    status = await db.execute(
        "INSERT INTO interaction_logs (interaction_id, user_id, timestamp, interaction_type, target_entity_type, "
        "target_entity_id, content_text, content_structured) "
        "SELECT r.interaction_id, $1, r.at, r.kind, r.target_type, r.target_id, r.text, r.structured::jsonb "
        "FROM unnest($2::text[], $3::timestamp[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) "
        "AS r(interaction_id, at, kind, target_type, target_id, text, structured) "
        "ON CONFLICT (interaction_id) DO NOTHING",
        user_id,
        [r.interaction_id for r in rows],
        [to_db(r.timestamp) for r in rows],
        [r.interaction_type for r in rows],
        [r.target_entity_type for r in rows],
        [r.target_entity_id for r in rows],
        [r.content_text for r in rows],
        [None if r.content_structured is None else json.dumps(r.content_structured) for r in rows],
    )
    return row_count(status)


async def existing_interaction_ids(db: Executor, user_id: str, interaction_ids: Sequence[str]) -> set[str]:
    """Which of these interactions of the user exist (the demo writes each of its sample's once)."""
    rows = await db.fetch(
        "SELECT interaction_id FROM interaction_logs WHERE user_id = $1 AND interaction_id = ANY($2::text[])",
        user_id,
        list(interaction_ids),
    )
    return {row["interaction_id"] for row in rows}
