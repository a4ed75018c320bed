"""A concept's salience: how much it weighs in the user's memory now, from three signals and no LLM.

    salience = 0.5 · M + 0.3 · R + 0.2 · C        (in [0, 1], rounded to 2 decimals)

    M, mentions:    m / (m + 3), m = the user's memory units related to the concept (extracted relationships, either
                    way): 1 mention → 0.25, 3 → 0.5, 9 → 0.75; a concept talked about often outweighs one named once.
    R, recency:     0.5 ** (days since it was last mentioned / 30): the newest ingestion of those memory units (when
                    the user last talked about it), else when the concept was created; halves every 30 days.
    C, connections: c / (c + 3), c = the other concepts it is related to: a hub of the user's world matters more
                    than an isolated word.

Why these shapes: each signal saturates (a hundredth mention adds little), so no one of them can swamp the others,
and the result stays in [0, 1] like the weights it is made of. Why two decimals: salience decays with time, and a
value written on every small change would re-sync every concept daily; at two decimals a concept is written again
only when its salience visibly moved. The weights echo recall's (similarity, recency, importance: core/recall.py).
"""

from __future__ import annotations

from datetime import datetime

MENTIONS_WEIGHT, RECENCY_WEIGHT, CONNECTIONS_WEIGHT = 0.5, 0.3, 0.2
MENTIONS_HALF = 3.0
"""Mentions at which the mentions signal is one half."""
CONNECTIONS_HALF = 3.0
"""Related concepts at which the connections signal is one half."""
RECENCY_HALF_LIFE_DAYS = 30.0
DIGITS = 2


def saturating(count: float, half: float) -> float:
    """count / (count + half): 0 for none, one half at `half`, approaching 1."""
    return count / (count + half) if count > 0 else 0.0


def decay(age_days: float, half_life_days: float) -> float:
    """1 for now (or a date ahead of now: a clock skew is not a bonus), halving every `half_life_days`."""
    return float(0.5 ** (max(age_days, 0.0) / half_life_days))


def salience(mentions: int, connections: int, last_mentioned: datetime, now: datetime) -> float:
    """The formula above; `last_mentioned` and `now` are aware datetimes."""
    age_days = (now - last_mentioned).total_seconds() / 86400
    value = (
        MENTIONS_WEIGHT * saturating(mentions, MENTIONS_HALF)
        + RECENCY_WEIGHT * decay(age_days, RECENCY_HALF_LIFE_DAYS)
        + CONNECTIONS_WEIGHT * saturating(connections, CONNECTIONS_HALF)
    )
    return round(value, DIGITS)
