"""How recall ranks a memory: similarity, recency and importance together, as human memory does, with the reason.

    score = (ws · similarity + wr · recency + wi · importance) / (ws + wr + wi)        (in [0, 1])

    similarity: the cosine similarity to the query (a graph neighbour: its hit's, times the relationship's strength
                and a discount), clipped to [0, 1];
    recency:    0.5 ** (days since the memory was last touched / 30): a memory unit's last change (a retelling
                revises it), a concept's last update;
    importance: a memory unit's importance_score / 10, a concept's salience (core/salience.py), 0 when unknown.

The weights are settings (ORRERY_RECALL_WEIGHT_SIMILARITY, _RECENCY, _IMPORTANCE), 0.5 / 0.3 / 0.2 by default, the
original system's: what reads like the query counts most, but an old memory that mattered can outrank a fresh one
that barely did. Each hit says which component carried it (the largest weighted part), so an answer is explainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from core.salience import decay

RECENCY_HALF_LIFE_DAYS = 30.0
IMPORTANCE_SCALE = 10.0
"""memory_units.importance_score runs from 1 to 10; recall's importance, like salience, from 0 to 1."""
COMPONENTS = ("similarity", "recency", "importance")


@dataclass(frozen=True)
class RecallWeights:
    """Non-negative, finite, not all zero (a ValueError names what is wrong)."""

    similarity: float = 0.5
    recency: float = 0.3
    importance: float = 0.2

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"recall weight {name} must be a finite number >= 0, got {value!r}")
        if self.total <= 0:
            raise ValueError("recall weights are all 0: give at least one a positive weight (defaults 0.5, 0.3, 0.2)")

    @property
    def total(self) -> float:
        return self.similarity + self.recency + self.importance


@dataclass(frozen=True)
class Scored:
    score: float
    components: dict[str, float]
    """Each component's value in [0, 1], before weighting."""
    carried_by: str
    """The component whose weighted part is the largest: why this memory came back."""

    def explain(self) -> str:
        parts = ", ".join(f"{name} {value:.2f}" for name, value in self.components.items())
        return f"carried by {self.carried_by} ({parts})"


def clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def score(
    weights: RecallWeights, *, similarity: float, touched: datetime, importance: float | None, now: datetime
) -> Scored:
    """The formula above for one memory; `importance` already in [0, 1] (memory_importance / concept salience)."""
    components = {
        "similarity": clip(similarity),
        "recency": decay((now - touched).total_seconds() / 86400, RECENCY_HALF_LIFE_DAYS),
        "importance": clip(importance or 0.0),
    }
    weighted = {name: getattr(weights, name) * value for name, value in components.items()}
    carried_by = max(COMPONENTS, key=lambda name: (weighted[name], -COMPONENTS.index(name)))
    total = sum(weighted.values()) / weights.total
    return Scored(round(total, 4), {k: round(v, 4) for k, v in components.items()}, carried_by)


def memory_importance(importance_score: float | None) -> float | None:
    """A memory unit's importance_score (1 to 10) on recall's scale."""
    return None if importance_score is None else clip(importance_score / IMPORTANCE_SCALE)
