"""The insight agent: a growth cycle's material in, the user's updated picture out. Pure: no SQL, no queue.

Its modules: `view` (what the model is shown, as handles, within the token budget), `schema` (what the model
answers and the checks on it), `communities` (Louvain on the concept graph: found by an algorithm, only named by
the model) and `agent` (InsightAgent, which makes the one call and resolves the handles). Its prompt is
prompts/insight.j2, its scripted answers agents/samples/insight.json, its records core/insight.py, its reads
store/insight_material.py, its transaction store/insight_writes.py, its jobs jobs/insight.py and jobs/cycle.py.
"""

from agents.insight.agent import AGENT_NAME, PROMPT_NAME, InsightAgent
from agents.insight.communities import (
    DETECTION_METHOD,
    REUSE_JACCARD,
    best_connected,
    community_candidates,
    detect_communities,
    jaccard,
    match_existing,
    neighbour_counts,
    strongest_neighbours,
)
from agents.insight.schema import InsightLimits, InsightOutput, Shown, check_limits, check_references
from agents.insight.view import MAX_NAMED_COMMUNITIES, MEMBERS_SHOWN, InsightInput, View, build_view

__all__ = [
    "AGENT_NAME",
    "DETECTION_METHOD",
    "MAX_NAMED_COMMUNITIES",
    "MEMBERS_SHOWN",
    "PROMPT_NAME",
    "REUSE_JACCARD",
    "InsightAgent",
    "InsightInput",
    "InsightLimits",
    "InsightOutput",
    "Shown",
    "View",
    "best_connected",
    "build_view",
    "check_limits",
    "check_references",
    "community_candidates",
    "detect_communities",
    "jaccard",
    "match_existing",
    "neighbour_counts",
    "strongest_neighbours",
]
