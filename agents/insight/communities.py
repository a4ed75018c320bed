"""Communities of a user's concept graph: found by an algorithm, only named by the model.

Why an algorithm and not the model: a community is a fact about the graph (which concepts hang together), and a
model shown a few hundred concepts neither sees the whole graph nor answers the same twice. Louvain (networkx's
`louvain_communities`) is seeded and the graph is built in a fixed order, so the same graph always gives the same
communities. Between cycles the graph changes a little and Louvain may draw slightly different borders, so a found
community takes over the existing community it overlaps most (Jaccard at least REUSE_JACCARD): the user keeps
"Running & the half marathon" under one id instead of seeing it replaced every week.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx

from core.insight import CommunityCandidate, ConceptLink, ExistingCommunity

SEED = 42
RESOLUTION = 1.0
DETECTION_METHOD = f"louvain(networkx, seed={SEED}, resolution={RESOLUTION})"
"""`communities.detection_method`: what found a community, enough to reproduce it."""
MIN_SIZE = 2
"""A lone concept is not a community."""
REUSE_JACCARD = 0.5
"""A found community reuses an existing one when their Jaccard index (shared members / all members) is this high."""


def detect_communities(links: Sequence[ConceptLink], *, seed: int = SEED) -> list[tuple[str, ...]]:
    """Communities of at least MIN_SIZE concepts, each sorted, largest first (ties by first member): the same list
    for the same graph, whatever order `links` came in."""
    graph: nx.Graph[str] = nx.Graph()
    for link in sorted(links, key=lambda link: (link.a, link.b)):
        if link.weight > 0 and link.a != link.b:
            graph.add_edge(link.a, link.b, weight=link.weight)
    if graph.number_of_edges() == 0:
        return []
    found = nx.community.louvain_communities(graph, weight="weight", resolution=RESOLUTION, seed=seed)
    groups = [tuple(sorted(members)) for members in found if len(members) >= MIN_SIZE]
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    left, right = set(a), set(b)
    union = left | right
    return len(left & right) / len(union) if union else 0.0


def match_existing(
    found: Sequence[Sequence[str]],
    existing: Sequence[ExistingCommunity],
    *,
    threshold: float = REUSE_JACCARD,
) -> list[ExistingCommunity | None]:
    """For each found community, the existing one it continues (or None): best overlaps first, each existing
    community taken at most once."""
    current = [community.core_concept_ids for community in existing]
    pairs = sorted(
        (
            (score, i, j)
            for i, group in enumerate(found)
            for j, members in enumerate(current)
            if (score := jaccard(group, members)) >= threshold
        ),
        key=lambda pair: (-pair[0], pair[1], pair[2]),
    )
    chosen: list[ExistingCommunity | None] = [None] * len(found)
    taken: set[int] = set()
    for _, i, j in pairs:
        if chosen[i] is None and j not in taken:
            chosen[i] = existing[j]
            taken.add(j)
    return chosen


def neighbour_counts(links: Sequence[ConceptLink]) -> dict[str, int]:
    """How many concepts each concept is linked to in the graph (its degree)."""
    counts: dict[str, int] = {}
    for link in links:
        counts[link.a] = counts.get(link.a, 0) + 1
        counts[link.b] = counts.get(link.b, 0) + 1
    return counts


def best_connected(members: Sequence[str], degrees: Mapping[str, int], count: int) -> list[str]:
    """The `count` members with the most neighbours (ties by id): what a community is named by."""
    return sorted(members, key=lambda member: (-degrees.get(member, 0), member))[:count]


FALLBACK_MEMBERS = 3


def community_candidates(
    found: Sequence[Sequence[str]],
    existing: Sequence[ExistingCommunity],
    degrees: Mapping[str, int],
    names: Mapping[str, str],
    *,
    members_shown: int,
) -> list[CommunityCandidate]:
    """The found communities as the agent takes them: matched to existing ones, with the names of their
    best-connected members (`names` must hold those: see `best_connected`) and a name to fall back on; largest
    first, then by their members' names, so the same graph always gives the same handles (ids are random)."""

    def shown(group: Sequence[str]) -> list[str]:
        top = [c for c in best_connected(group, degrees, members_shown) if c in names]
        return [names[c] for c in sorted(top, key=lambda c: (-degrees.get(c, 0), names[c]))]

    named = [
        (group, previous, shown(group)) for group, previous in zip(found, match_existing(found, existing), strict=True)
    ]
    named.sort(key=lambda item: (-len(item[0]), sorted(item[2]), item[0]))
    return [
        CommunityCandidate(
            key=f"k{n}",
            concept_ids=tuple(group),
            top_members=tuple(top),
            existing=previous,
            fallback_name=(", ".join(top[:FALLBACK_MEMBERS]) or f"Community {n}")[:200],
        )
        for n, (group, previous, top) in enumerate(named, start=1)
    ]


def strongest_neighbours(links: Sequence[ConceptLink], concept_ids: Sequence[str], count: int) -> list[str]:
    """Up to `count` concepts linked to any of `concept_ids` (and not among them), strongest link first (ties by
    id): where a duplicate of one of the cycle's concepts usually is."""
    mine = set(concept_ids)
    best: dict[str, float] = {}
    for link in links:
        for here, there in ((link.a, link.b), (link.b, link.a)):
            if here in mine and there not in mine:
                best[there] = max(best.get(there, 0.0), link.weight)
    return sorted(best, key=lambda concept: (-best[concept], concept))[:count]
