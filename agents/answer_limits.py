"""How an answer's size problems are worded for the repair request: the same words from every agent, so the model
is told alike what to shorten, whichever prompt it answered."""

from __future__ import annotations

from collections.abc import Iterable


def too_many(counts: Iterable[tuple[str, int, int]]) -> list[str]:
    """One problem per (where, count, most) whose count is over its most."""
    return [
        f"{where}: {count} items; give at most {most}, the most important ones"
        for where, count, most in counts
        if count > most
    ]


def text_problem(where: str, value: str | None, most: int, *, required: bool = False) -> str | None:
    """A blank required text, or one longer than `most` characters; None when it is fine (or absent)."""
    if value is None:
        return None
    if required and not value.strip():
        return f"{where}: must not be blank"
    if len(value) > most:
        return f"{where}: {len(value)} characters; write at most {most}"
    return None
