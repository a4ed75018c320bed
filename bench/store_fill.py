"""Filling a derived store the fast way for the benchmarks that need one full (bench_reconcile, bench_upgrade)."""

from __future__ import annotations

import random

from cli.session import Session
from store.sync import VECTOR_LABELS, knowledge_item, read_records
from store.vector.base import VectorItem


async def fill_vectors(session: Session, user_id: str) -> int:
    """The vector items Postgres says the user should have, with random unit vectors (no model): what the dispatcher
    would write, without the embedding time. Returns how many."""
    vector = await session.vector()
    rng = random.Random(3)
    items = []
    for label in VECTOR_LABELS:
        for record in (await read_records(session.pool, user_id, label, None)).values():
            item = knowledge_item(label, record)
            if item is not None:
                raw = [rng.gauss(0, 1) for _ in range(vector.dimension)]
                norm = sum(x * x for x in raw) ** 0.5
                items.append(VectorItem(item, [x / norm for x in raw], vector.model_version))
    for start in range(0, len(items), 2000):
        await vector.upsert(items[start : start + 2000])
    return len(items)
