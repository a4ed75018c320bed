"""The report's numbers, computed in code from the cycle's rows (never by the model): growth per dimension this
cycle vs the previous one, top concepts, memory highlights and counts. Pure."""

from __future__ import annotations

from typing import Any

from agents.cycle_report.inputs import COUNTED, CycleMaterial
from core.vocabulary import GrowthDimension

PREVIEW_CHARS = 280


def growth_table(material: CycleMaterial) -> dict[str, dict[str, float | int]]:
    """Every dimension (zeros included, so the web app draws six bars): this cycle's summed delta, the previous
    cycle's, the change, and this cycle's event count; rounded to 3 decimals."""
    table: dict[str, dict[str, float | int]] = {}
    for dimension in GrowthDimension:
        sums = material.growth.get(dimension.value)
        this, previous, events = (sums.this_cycle, sums.previous_cycle, sums.events) if sums else (0.0, 0.0, 0)
        table[dimension.value] = {
            "this_cycle": round(this, 3),
            "previous_cycle": round(previous, 3),
            "change": round(this - previous, 3),
            "events": events,
        }
    return table


def content_data(material: CycleMaterial, *, empty: bool) -> dict[str, Any]:
    """The artifact's `content_data`: what the web app renders next to the narrative."""
    return {
        "cycle_start": material.cycle_start.isoformat(),
        "cycle_end": material.cycle_end.isoformat(),
        "previous_cycle_start": material.previous_start.isoformat(),
        "empty": empty,
        "growth": growth_table(material),
        "top_concepts": [
            {"concept_id": c.concept_id, "name": c.name, "type": c.type, "mentions": c.mentions}
            for c in material.top_concepts
        ],
        "memory_highlights": [
            {"memory_unit_id": h.memory_unit_id, "title": h.title, "importance": h.importance}
            for h in material.highlights
        ],
        "counts": {name: material.counts.get(name, 0) for name in COUNTED},
    }
