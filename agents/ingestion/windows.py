"""A conversation as prompt lines, cut into windows that fit the input budget.

Why: a conversation longer than the budget is split on message boundaries, with a small overlap so an exchange cut
by a boundary is still seen whole once; the merge (merge.py) removes the duplicates the overlap causes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.ingestion.inputs import ConversationMessage
from agents.llm import estimate_tokens

OVERLAP_FRACTION = 0.1
"""Share of a window's token budget repeated from the end of the previous window, so an exchange cut by a window
boundary is still seen whole once; duplicates this causes are removed by the merge."""


@dataclass(frozen=True)
class Line:
    """One message (or one slice of an oversized message) as the model sees it."""

    n: int
    role: str
    at: str
    content: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.content) + 12  # the <message …> wrapper


def _role(role: str) -> str:
    cleaned = re.sub(r"[^a-z_]", "", role.lower())
    return cleaned or "unknown"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z; a naive time is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_lines(messages: Sequence[ConversationMessage], token_budget: int) -> list[Line]:
    """Messages as prompt lines; a message longer than the whole budget is cut into budget-sized slices."""
    lines: list[Line] = []
    max_chars = max(1, (token_budget - 12) * 4)
    for n, message in enumerate(messages, start=1):
        text = message.content.strip()
        if not text:
            continue
        for start in range(0, len(text), max_chars):
            lines.append(Line(n, _role(message.role), iso_utc(message.timestamp), text[start : start + max_chars]))
    return lines


def split_into_windows(costs: Sequence[int], token_budget: int, overlap_tokens: int) -> list[range]:
    """Windows over items with the given token costs: consecutive runs within `token_budget`, each after the first
    starting with up to `overlap_tokens` of the previous run's last items. An item over budget gets a window of its
    own, and every window after the first holds at least one item its predecessor did not, so no call is wasted on
    a window that is all overlap."""
    windows: list[range] = []
    start = 0
    while start < len(costs):
        end, used = start, 0
        while end < len(costs) and (end == start or used + costs[end] <= token_budget):
            used += costs[end]
            end += 1
        windows.append(range(start, end))
        if end >= len(costs):
            break
        next_start, overlap = end, 0
        while (
            next_start - 1 > start
            and overlap + costs[next_start - 1] <= overlap_tokens
            and overlap + costs[next_start - 1] + costs[end] <= token_budget  # room for at least one new item
        ):
            next_start -= 1
            overlap += costs[next_start]
        start = next_start
    return windows


def windows_of(lines: list[Line], token_budget: int) -> list[list[Line]]:
    """The lines cut into windows of `token_budget` with OVERLAP_FRACTION of overlap."""
    spans = split_into_windows([line.tokens for line in lines], token_budget, int(token_budget * OVERLAP_FRACTION))
    return [lines[span.start : span.stop] for span in spans]
