"""What the model answers for one cycle, and the checks pydantic cannot make (references, sizes, blankness).

Why handles: the model sees the cycle's memory units as m1..mN, concepts as c1..cN and detected communities as
k1..kN, never database ids, and every reference in its answer is checked against what it was shown; an unknown one
goes back to the model in the one repair request, so an answer can never name a row it was not shown. The schema is
strict-mode friendly and small (short descriptions, limits checked here rather than sent with every call).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import Field

from agents.answer_limits import text_problem, too_many
from agents.handles import Listing, handle_pattern
from core.ingestion import ForwardContext
from core.insight import InsightArtifactType
from core.vocabulary import GrowthDimension, RelationshipType, StorableModel

_HANDLE = handle_pattern("mc")
_CONCEPT = handle_pattern("c")
_COMMUNITY = handle_pattern("k")


class ProfileOutput(StorableModel):
    summary: str = Field(description="Who the user is now, 3-6 sentences")
    traits: list[str]
    values: list[str]
    goals: list[str]
    interests: list[str]
    key_people: list[str] = Field(description='"Name (who they are)"')
    current_focus: str | None
    communication_style: str | None


class ConceptTypeOutput(StorableModel):
    type: str
    description: str


class RelationshipPatternOutput(StorableModel):
    source_type: str
    relationship_type: RelationshipType
    target_type: str
    description: str


class GraphSchemaOutput(StorableModel):
    concept_types: list[ConceptTypeOutput]
    relationship_patterns: list[RelationshipPatternOutput]


class ArtifactOutput(StorableModel):
    artifact_type: InsightArtifactType
    title: str
    narrative: str
    sources: list[str] = Field(description='Handles it rests on: "m2", "c5"')


class MergeOutput(StorableModel):
    primary: str = Field(pattern=_CONCEPT, description="The concept to keep")
    duplicates: list[str] = Field(description="Concept handles that are the same thing")
    reason: str


class InsightGrowthOutput(StorableModel):
    about: str = Field(pattern=_HANDLE, description='A memory unit or concept handle: "m2", "c5"')
    dim_key: GrowthDimension
    delta: float = Field(ge=-1, le=1)
    rationale: str


class CommunityNameOutput(StorableModel):
    community: str = Field(pattern=_COMMUNITY, description='"k1", "k2", …')
    name: str
    description: str


class InsightOutput(StorableModel):
    """The model's whole answer for one cycle."""

    memory_profile: ProfileOutput
    knowledge_graph_schema: GraphSchemaOutput
    artifacts: list[ArtifactOutput]
    concept_merges: list[MergeOutput]
    growth_events: list[InsightGrowthOutput]
    communities: list[CommunityNameOutput]
    next_conversation: ForwardContext


@dataclass(frozen=True)
class Shown:
    """How many items of each kind the model was shown (handles 1..n of each)."""

    memory_units: int
    concepts: int
    communities: int
    goals: frozenset[int] = frozenset()
    """Numbers of the concept handles that are goals (type goal): what a goal achievement story can be about."""

    @property
    def handles(self) -> Listing:
        return Listing({"m": self.memory_units, "c": self.concepts, "k": self.communities})


def check_references(output: InsightOutput, shown: Shown) -> list[str]:
    """Problems pydantic cannot see: handles that were not shown, a merge that does not make sense, not exactly one
    insight_summary. Addressed to the model: they go back to it in the repair request."""
    problems: list[str] = []
    listing = shown.handles

    def known(handle: str, where: str, kinds: str) -> None:
        if problem := listing.problem(where, handle, kinds):
            problems.append(problem)

    summaries = sum(1 for a in output.artifacts if a.artifact_type is InsightArtifactType.INSIGHT_SUMMARY)
    if summaries != 1:
        problems.append(f"artifacts: give exactly one insight_summary (you gave {summaries})")
    storied: dict[int, int] = {}
    for i, artifact in enumerate(output.artifacts):
        if not artifact.sources:
            problems.append(f"artifacts[{i}].sources: name at least one memory unit or concept it rests on")
        for j, source in enumerate(artifact.sources):
            known(source, f"artifacts[{i}].sources[{j}]", "mc")
        if artifact.artifact_type is InsightArtifactType.GOAL_STORY:
            problem, goal = _goal_story_problem(artifact, shown, storied, i)
            if problem:
                problems.append(problem)
            elif goal is not None:
                storied[goal] = i
    merged: dict[str, str] = {}
    for i, merge in enumerate(output.concept_merges):
        where = f"concept_merges[{i}]"
        known(merge.primary, f"{where}.primary", "c")
        if not merge.duplicates:
            problems.append(f"{where}.duplicates: name at least one duplicate, or leave the merge out")
        for j, duplicate in enumerate(merge.duplicates):
            known(duplicate, f"{where}.duplicates[{j}]", "c")
            if duplicate == merge.primary:
                problems.append(f"{where}: {duplicate} cannot be a duplicate of itself")
        for handle in {merge.primary, *merge.duplicates}:
            if handle in merged and merged[handle] != where:
                problems.append(f"{where}: {handle} is already in {merged[handle]}; put each concept in one merge")
            merged[handle] = where
    for i, event in enumerate(output.growth_events):
        known(event.about, f"growth_events[{i}].about", "mc")
    named: set[str] = set()
    for i, community in enumerate(output.communities):
        known(community.community, f"communities[{i}].community", "k")
        if community.community in named:
            problems.append(f"communities[{i}]: {community.community} is named twice; name each community once")
        named.add(community.community)
    return problems


def story_goals(artifact: ArtifactOutput, shown: Shown) -> list[int]:
    """The numbers of the goal concepts (shown.goals) an artifact names among its sources: a goal achievement story
    passes check_references with exactly one, the goal it tells of."""
    listing = shown.handles
    found = (listing.resolve(source, "c") for source in artifact.sources)
    return sorted({h.number for h in found if h is not None and h.number in shown.goals})


def _goal_story_problem(
    artifact: ArtifactOutput, shown: Shown, storied: dict[int, int], i: int
) -> tuple[str | None, int | None]:
    """One message for what a goal achievement story lacks (its one goal, its arc) or for a second story of one goal;
    else None and its goal's number."""
    goals = story_goals(artifact, shown)
    listing = shown.handles
    units = {h.number for source in artifact.sources if (h := listing.resolve(source, "m")) is not None}
    wrong = []
    if len(goals) != 1:
        named = ", ".join(f"c{n}" for n in goals) or "none"
        wrong.append(f"name exactly one concept of type goal that the user reached (you named {named})")
    if len(units) < 2:
        wrong.append(f"cite at least two memory units, from the goal's first memory to its achievement ({len(units)})")
    where = f"artifacts[{i}].sources"
    if wrong:
        return f"{where}: a goal_achievement_story must " + " and ".join(wrong), None
    if goals[0] in storied:
        return f"{where}: c{goals[0]} already has its story in artifacts[{storied[goals[0]]}]; tell it once", None
    return None, goals[0]


@dataclass(frozen=True)
class InsightLimits:
    """What one answer may hold: generous for a week, so only a runaway answer meets them."""

    artifacts: int = 8
    merges: int = 20
    growth_events: int = 30
    list_items: int = 15
    """Items of each list of the profile and the graph schema."""
    text_chars: int = 4000
    name_chars: int = 200


def check_limits(output: InsightOutput, limits: InsightLimits) -> list[str]:
    """Too many items, texts too long, blank titles and names; addressed to the model, for the repair request."""
    problems: list[str] = []
    profile, schema = output.memory_profile, output.knowledge_graph_schema
    counts = (
        ("artifacts", len(output.artifacts), limits.artifacts),
        ("concept_merges", len(output.concept_merges), limits.merges),
        ("growth_events", len(output.growth_events), limits.growth_events),
        ("communities", len(output.communities), limits.artifacts * 4),
        *((where, len(items), limits.list_items) for where, items in _profile_lists(output)),
        ("knowledge_graph_schema.concept_types", len(schema.concept_types), limits.list_items),
        ("knowledge_graph_schema.relationship_patterns", len(schema.relationship_patterns), limits.list_items),
        ("next_conversation.unresolved_topics", len(output.next_conversation.unresolved_topics), limits.list_items),
    )
    problems += too_many(counts)

    def text(where: str, value: str | None, most: int, *, required: bool = False) -> None:
        if problem := text_problem(where, value, most, required=required):
            problems.append(problem)

    names, texts = limits.name_chars, limits.text_chars
    text("memory_profile.summary", profile.summary, texts, required=True)
    text("memory_profile.current_focus", profile.current_focus, names)
    text("memory_profile.communication_style", profile.communication_style, names)
    for field, items in _profile_lists(output):
        for i, item in enumerate(items):
            text(f"{field}[{i}]", item, names, required=True)
    for i, kind in enumerate(schema.concept_types):
        text(f"knowledge_graph_schema.concept_types[{i}].type", kind.type, names, required=True)
        text(f"knowledge_graph_schema.concept_types[{i}].description", kind.description, texts)
    for i, pattern in enumerate(schema.relationship_patterns):
        where = f"knowledge_graph_schema.relationship_patterns[{i}]"
        text(f"{where}.source_type", pattern.source_type, names, required=True)
        text(f"{where}.target_type", pattern.target_type, names, required=True)
        text(f"{where}.description", pattern.description, texts)
    for i, artifact in enumerate(output.artifacts):
        text(f"artifacts[{i}].title", artifact.title, names, required=True)
        text(f"artifacts[{i}].narrative", artifact.narrative, texts, required=True)
    for i, merge in enumerate(output.concept_merges):
        text(f"concept_merges[{i}].reason", merge.reason, texts)
    for i, event in enumerate(output.growth_events):
        text(f"growth_events[{i}].rationale", event.rationale, texts)
    for i, community in enumerate(output.communities):
        text(f"communities[{i}].name", community.name, names, required=True)
        text(f"communities[{i}].description", community.description, texts)
    forward = output.next_conversation
    text("next_conversation.proactive_greeting", forward.proactive_greeting, texts)
    text("next_conversation.suggested_focus", forward.suggested_focus, names)
    for i, topic in enumerate(forward.unresolved_topics):
        text(f"next_conversation.unresolved_topics[{i}].topic", topic.topic, names)
        text(f"next_conversation.unresolved_topics[{i}].suggested_question", topic.suggested_question, texts)
    return problems


def _profile_lists(output: InsightOutput) -> Iterable[tuple[str, list[str]]]:
    profile = output.memory_profile
    yield "memory_profile.traits", profile.traits
    yield "memory_profile.values", profile.values
    yield "memory_profile.goals", profile.goals
    yield "memory_profile.interests", profile.interests
    yield "memory_profile.key_people", profile.key_people
