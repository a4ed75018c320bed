"""Exponential backoff with "equal jitter", the one retry delay of the LLM client and the job runtime."""

from __future__ import annotations

import random
from collections.abc import Callable


def equal_jitter(base_s: float, step: int, cap_s: float, *, rng: Callable[[], float] = random.random) -> float:
    """base * 2^step, capped, half fixed and half random: calls or jobs that failed together (an LLM outage) do not
    all come back in the same instant, yet none retries almost at once."""
    ceiling = min(cap_s, base_s * 2.0 ** max(step, 0))
    return ceiling / 2 + rng() * ceiling / 2
