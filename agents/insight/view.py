"""What the model is shown of a cycle: the material as handles, cut to the token budget.

Why a budget here as well as LIMITs in the store: the store bounds how many rows are read, the budget bounds what
they cost in a prompt, whatever their length. The standing context (profile, schema, growth, communities) goes in
first; the rest is shared between conversation summaries, earlier memories (recalled from the whole history for
the cycle's themes), memory units and concepts in that order of priority, each list already sorted most important
first, so what is cut is always the least important.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.insight.schema import Shown
from agents.llm import estimate_tokens
from core.insight import (
    CommunityCandidate,
    ConceptDigest,
    ConversationDigest,
    EarlierMemory,
    InsightMaterial,
    MemoryDigest,
)
from core.language import ENGLISH, Language
from core.vocabulary import is_goal_type

MAX_NAMED_COMMUNITIES = 12
"""Communities the model names per cycle (the largest); smaller ones keep their name or get their members'."""
MEMBERS_SHOWN = 6
CONTENT_CHARS = 600
SUMMARY_CHARS = 800
DESCRIPTION_CHARS = 200
SHARES = (0.25, 0.10, 0.35, 0.30)
"""How the budget left after the standing context is shared: conversations, earlier memories, memory units, concepts
(what the first two leave unused goes to the memory units, what they leave to the concepts)."""


@dataclass(frozen=True)
class InsightInput:
    """Everything the agent reads: the store's material, the communities the job detected and matched, and each
    concept's number of neighbours in the whole graph."""

    material: InsightMaterial
    communities: Sequence[CommunityCandidate] = ()
    degrees: Mapping[str, int] = field(default_factory=dict)
    detection_method: str | None = None
    language: Language = ENGLISH
    """What the user reads (core/language.py): the texts the model writes for them are in it."""
    earlier: Sequence[EarlierMemory] = ()
    """Memory units from before the cycle that recall found relevant to its themes, best first."""


@dataclass(frozen=True)
class View:
    """The items behind the handles (m<i> is memory_units[i-1]: the cycle's shown, then the earlier ones shown, …)
    and the prompt's variables."""

    memory_units: list[MemoryDigest]
    concepts: list[ConceptDigest]
    communities: list[CommunityCandidate]
    variables: dict[str, Any]

    @property
    def shown(self) -> Shown:
        goals = frozenset(n for n, c in enumerate(self.concepts, start=1) if is_goal_type(c.type))
        return Shown(len(self.memory_units), len(self.concepts), len(self.communities), goals)


def _date(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def _cut(text: str | None, most: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= most else text[: most - 1] + "…"


def _json(value: Mapping[str, Any] | None) -> str | None:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str) if value else None


def _conversation(c: ConversationDigest) -> dict[str, Any]:
    return {
        "date": _date(c.start_time),
        "title": _cut(c.title or "(untitled)", 200),
        "importance": c.importance,
        "summary": _cut(c.summary, SUMMARY_CHARS),
    }


def _memory(handle: int, m: MemoryDigest) -> dict[str, Any]:
    return {
        "handle": f"m{handle}",
        "date": _date(m.creation_ts),
        "importance": m.importance,
        "title": _cut(m.title, 200),
        "content": _cut(m.content, CONTENT_CHARS),
    }


def _earlier(handle: int, e: EarlierMemory) -> dict[str, Any]:
    return {**_memory(handle, e.memory), "recalled_for": _cut(e.recalled_for, 200)}


def _concept(handle: int, c: ConceptDigest, degrees: Mapping[str, int]) -> dict[str, Any]:
    return {
        "handle": f"c{handle}",
        "name": c.name,
        "type": c.type,
        "description": _cut(c.description, DESCRIPTION_CHARS) or None,
        "mentions": c.mentions,
        "neighbours": degrees.get(c.concept_id, c.degree),
        "told": " (story told)" if c.story_told else "",
    }


def _community(handle: int, candidate: CommunityCandidate) -> dict[str, Any]:
    shown = list(candidate.top_members[:MEMBERS_SHOWN])
    more = len(candidate.concept_ids) - len(shown)
    previous = candidate.existing
    return {
        "handle": f"k{handle}",
        "size": len(candidate.concept_ids),
        "members": ", ".join(shown) + (f" and {more} more" if more > 0 else ""),
        "previous_name": previous.name if previous else None,
        "previous_description": _cut(previous.description, DESCRIPTION_CHARS) if previous else None,
    }


_LINES = {
    "conversation": '{date} "{title}" (importance {importance}): {summary}',
    "memory": "{handle}. [{date}, importance {importance}] {title}: {content}",
    "earlier": "{handle}. [{date}, importance {importance}] {title}: {content} (recalled: {recalled_for})",
    "concept": "{handle}. {name} ({type}){told}: {description} [{mentions} mention(s) this cycle, {neighbours} "
    "neighbour(s)]",
    "community": '{handle}. {size} concepts: {members}; previously "{previous_name}": {previous_description}',
    "growth": "{dim}: {total} over {events} event(s)",
}
"""Each item's line as prompts/insight.j2 writes it (at its longest), to price it before rendering."""


def _cost(kind: str, item: Mapping[str, Any]) -> int:
    """Tokens one item's line takes in the prompt."""
    return estimate_tokens(_LINES[kind].format(**item)) + 1


def _take(kind: str, items: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The leading items that fit in `budget` tokens (at least none), and what they cost."""
    taken, used = [], 0
    for item in items:
        cost = _cost(kind, item)
        if used + cost > budget:
            break
        taken.append(item)
        used += cost
    return taken, used


def build_view(data: InsightInput, token_budget: int) -> View:
    """The prompt's variables for this cycle within `token_budget` tokens of data (estimated)."""
    material = data.material
    communities = list(data.communities[:MAX_NAMED_COMMUNITIES])
    standing: dict[str, Any] = {
        "language": data.language.instruction,
        "memory_profile": _json(material.memory_profile),
        "knowledge_graph_schema": _json(material.knowledge_graph_schema),
        "next_context": _json(material.next_context),
        "growth": [{"dim": g.dim_key.value, "total": round(g.total, 2), "events": g.events} for g in material.growth],
        "communities": [_community(i, c) for i, c in enumerate(communities, start=1)],
    }
    fixed = sum(estimate_tokens(v) for v in standing.values() if isinstance(v, str))
    fixed += sum(_cost("growth", item) for item in standing["growth"])
    fixed += sum(_cost("community", item) for item in standing["communities"])
    left = max(token_budget - fixed, token_budget // 4)  # the cycle's own material always gets a share

    conversations, used = _take(
        "conversation", [_conversation(c) for c in material.conversations], int(left * SHARES[0])
    )
    # earlier memories are priced first (their share is small and fixed) but numbered after the cycle's own units
    first_earlier = len(material.memory_units) + 1
    earlier, earlier_cost = _take(
        "earlier", [_earlier(first_earlier + i, e) for i, e in enumerate(data.earlier)], int(left * SHARES[1])
    )
    budget_units = int(left * (SHARES[0] + SHARES[1] + SHARES[2])) - used - earlier_cost
    units, unit_cost = _take(
        "memory", [_memory(i, m) for i, m in enumerate(material.memory_units, start=1)], budget_units
    )
    for n, item in enumerate(earlier, start=len(units) + 1):  # handles follow the cycle's units actually shown
        item["handle"] = f"m{n}"
    budget_concepts = left - used - earlier_cost - unit_cost
    concepts, _ = _take(
        "concept", [_concept(i, c, data.degrees) for i, c in enumerate(material.concepts, start=1)], budget_concepts
    )
    variables = {
        **standing,
        "cycle": {
            "start": _date(material.window_start),
            "end": _date(material.window_end),
            "conversations": material.active_conversations,
            "concepts_created": material.concepts_created_in_cycle,
        },
        "conversations": conversations,
        "memory_units": units,
        "earlier_memories": earlier,
        "concepts": concepts,
    }
    return View(
        memory_units=[*material.memory_units[: len(units)], *(e.memory for e in data.earlier[: len(earlier)])],
        concepts=list(material.concepts[: len(concepts)]),
        communities=communities,
        variables=variables,
    )
