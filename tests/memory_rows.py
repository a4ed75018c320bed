"""How many memory rows of each kind a user has: what ingestion tests compare after a write, a rerun or a failure."""

from __future__ import annotations

import asyncpg

from store.repos import cards, concepts, memory_units
from tests.store import testrows


async def memory_counts(pool: asyncpg.Pool, user_id: str) -> dict[str, int]:
    return {
        "memory_units": len(await memory_units.list_memory_units(pool, user_id)),
        "concepts": len(await concepts.list_concepts(pool, user_id)),
        "growth_events": len(await testrows.list_growth_events(pool, user_id)),
        "cards": len(await cards.list_cards(pool, user_id)),
        "edges": len(await testrows.list_edges(pool, user_id)),
    }
