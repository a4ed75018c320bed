"""The two scores of memory, pure: a concept's salience (core/salience.py) and recall's ranking (core/recall.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.recall import RecallWeights, memory_importance, score
from core.salience import salience

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_salience_grows_with_mentions_and_connections_and_fades_with_time() -> None:
    assert salience(0, 0, NOW, NOW) == 0.3  # a concept just named: recency only
    assert salience(1, 0, NOW, NOW) == 0.42  # 0.5 * 1/4 + 0.3
    assert salience(3, 3, NOW, NOW) == 0.65  # 0.5 * 1/2 + 0.3 + 0.2 * 1/2
    assert salience(3, 3, NOW - timedelta(days=30), NOW) == 0.5  # recency halved after 30 days
    assert salience(3, 3, NOW - timedelta(days=3650), NOW) == 0.35  # a decade on: the mentions and links remain
    assert salience(9, 0, NOW, NOW) > salience(3, 0, NOW, NOW) > salience(1, 0, NOW, NOW)
    assert salience(1000, 1000, NOW, NOW) <= 1.0
    assert salience(1, 1, NOW + timedelta(days=2), NOW) == salience(1, 1, NOW, NOW)  # a skewed clock is no bonus


def test_recall_weights_are_checked() -> None:
    assert RecallWeights() == RecallWeights(0.5, 0.3, 0.2)
    RecallWeights(1, 0, 0)  # similarity alone is allowed
    for bad in ((0, 0, 0), (-0.1, 0.5, 0.5), (float("nan"), 0.3, 0.2), (float("inf"), 0.3, 0.2)):
        with pytest.raises(ValueError, match="recall weight"):
            RecallWeights(*bad)


def test_the_three_components_weigh_as_set_and_each_hit_says_which_carried_it() -> None:
    """With the original system's weights, a fresh memory gets 0.3 a year-old one has lost: an old memory must be
    clearly more similar, or matter more, to win; between two old ones, the one that mattered wins."""
    weights = RecallWeights()
    year_ago = NOW - timedelta(days=365)
    fresh = score(weights, similarity=0.6, touched=NOW, importance=0.1, now=NOW)
    assert score(weights, similarity=0.6, touched=year_ago, importance=0.9, now=NOW).score < fresh.score
    vivid = score(weights, similarity=0.95, touched=year_ago, importance=1.0, now=NOW)
    assert vivid.score > fresh.score and vivid.carried_by == "similarity"
    mattered = score(weights, similarity=0.5, touched=year_ago, importance=0.9, now=NOW)
    trivial = score(weights, similarity=0.55, touched=year_ago, importance=0.1, now=NOW)
    assert mattered.score > trivial.score
    assert fresh.carried_by == "similarity" and "recency 1.00" in fresh.explain()
    assert (
        score(RecallWeights(0, 0, 1), similarity=0.6, touched=NOW, importance=0.9, now=NOW).carried_by == "importance"
    )
    assert score(RecallWeights(0, 1, 0), similarity=0.9, touched=NOW, importance=0.9, now=NOW).carried_by == "recency"
    alone = RecallWeights(1, 0, 0)
    assert score(alone, similarity=0.6, touched=year_ago, importance=0.9, now=NOW).score == 0.6
    assert 0 <= score(weights, similarity=-0.4, touched=NOW, importance=None, now=NOW).score <= 1  # clipped
    assert memory_importance(8) == 0.8 and memory_importance(None) is None and memory_importance(42) == 1.0
