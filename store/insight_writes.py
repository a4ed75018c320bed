"""Writing one cycle's insight: everything in one transaction, or nothing, and never twice.

Why one transaction, gated on the locked user row: arq delivers at least once and a cycle can be triggered by cron
and by hand, so the same insight can arrive twice (or two runs can race). The user's row is locked first (ingestion
locks it too, so the two take turns), then the gate: the cycle must still be the user's current one, and its
insight_summary artifact (a deterministic id from user id + cycle start) must not exist yet. A second writer finds
it and changes nothing. Every other row this writes also has a deterministic id (artifacts, growth events, new
communities), so even a write without the gate could not duplicate them.

A merge moves everything that pointed at the duplicate to the concept kept: relationships (runtime.knowledge_edges
truth rows; two that become one keep the stronger), cards (the kept concept keeps or takes over one card), growth
events, artifact sources and community members; the duplicate stays as `status='merged'` with
`merged_into_concept_id`, and its normalized name becomes an alias of the kept one, so ingestion finds the kept
concept by either name from then on. The graph and vector stores follow through the outbox rows written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.insight import (
    GENERATED_BY,
    ArtifactDraft,
    InsightResult,
    InsightStatus,
    MergeDraft,
    insight_row_id,
    summary_artifact_id,
)
from core.vocabulary import ArtifactType, EntityKind, NodeLabel, normalize_concept_name
from store import outbox, salience
from store.cycles import lock_current_cycle
from store.postgres import Executor
from store.proactive_prompts_writes import packaged_prompts
from store.repos import (
    cards,
    communities,
    concepts,
    derived_artifacts,
    growth_events,
    knowledge_edges,
    memory_units,
    users,
)
from store.repos._base import transaction, utc_now
from store.repos.cards import NewCard
from store.repos.communities import CommunityRow
from store.repos.concepts import ConceptRecord
from store.repos.derived_artifacts import NewArtifact
from store.repos.growth_events import NewGrowthEvent


@dataclass
class InsightWriteSummary:
    user_id: str
    cycle: str
    outcome: str  # "written", "already_written", "not_current_cycle"
    artifacts: int = 0
    cards: int = 0
    concepts_merged: int = 0
    relationships_moved: int = 0
    growth_events: int = 0
    communities: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "outcome": self.outcome,
            "artifacts": self.artifacts,
            "cards": self.cards,
            "concepts_merged": self.concepts_merged,
            "relationships_moved": self.relationships_moved,
            "growth_events": self.growth_events,
            "communities": self.communities,
        }


async def write_insight(db: Executor, result: InsightResult) -> InsightWriteSummary:
    """Persist `result` (status WRITTEN) once; a second call for the same cycle writes nothing."""
    if result.status is not InsightStatus.WRITTEN:
        raise ValueError(f"insight of user {result.user_id} has status {result.status}; only a written one is stored")
    user_id, cycle = result.user_id, result.cycle
    summary = InsightWriteSummary(user_id, cycle.stamp, outcome="written")
    async with transaction(db) as conn:
        if await lock_current_cycle(conn, user_id) != cycle:  # closed meanwhile (a deleted user: PermanentError)
            summary.outcome = "not_current_cycle"
            return summary
        if await derived_artifacts.artifact_exists(conn, user_id, summary_artifact_id(cycle)):
            summary.outcome = "already_written"
            return summary
        user = await users.get_user(conn, user_id)
        assert user is not None  # its row is locked

        changed: list[outbox.Change] = [outbox.Change(NodeLabel.USER, user_id)]
        for merge in result.merges:
            changed += await _merge_concepts(conn, user_id, merge, summary)
        changed += await _write_artifacts(conn, result, summary)
        await _write_growth(conn, result, summary)
        changed += await _write_communities(conn, result, summary)
        await users.record_insight(
            conn,
            user_id,
            memory_profile=result.memory_profile,
            knowledge_graph_schema=result.knowledge_graph_schema,
            next_context=_next_context(
                result,
                user.next_conversation_context_package,
                await packaged_prompts(conn, user_id, now=datetime.now(UTC)),
            ),
        )
        await salience.refresh_and_record(conn, user_id, changed)  # the graph and vector stores follow this commit
    return summary


def _next_context(result: InsightResult, current: Any, prompts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The package for the user's next conversation (with the deliverable `prompts`), unless a conversation newer
    than the cycle's latest one has already written its own since the material was read (ingestion's rule: the
    newest conversation's outlook wins). Only the keys docs/contract.md documents: the web app reads it."""
    latest = result.latest_conversation
    if result.next_context is None or latest is None:
        return None
    seen = current.get("source_conversation_start_time") if isinstance(current, dict) else None
    if isinstance(seen, str):
        try:
            newer = datetime.fromisoformat(seen)
        except ValueError:
            newer = None
        if newer is not None and (newer if newer.tzinfo else newer.replace(tzinfo=UTC)) > latest.start_time:
            return None
    return {
        **result.next_context.model_dump(mode="json"),
        "source_conversation_id": latest.conversation_id,
        "source_conversation_start_time": latest.start_time.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(),
        "proactive_prompts": prompts,
    }


async def _merge_concepts(
    conn: asyncpg.Connection, user_id: str, merge: MergeDraft, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """Merge the secondaries into the primary (see the module docstring); returns what changed, for the outbox.

    Only active concepts of this user take part: a primary that is gone or merged itself cancels the merge, and a
    secondary that is already merged, another user's or the primary itself is skipped, so a repeated merge changes
    nothing.
    """
    primary = await concepts.lock_active_concept(conn, user_id, merge.primary_id)
    if primary is None:
        return []
    now = utc_now()
    merged = await concepts.mark_merged(conn, user_id, primary.concept_id, merge.secondary_ids, at=now)
    if not merged:
        return []
    primary_id, gone = primary.concept_id, [concept.concept_id for concept in merged]
    await concepts.absorb(conn, user_id, primary_id, aliases=_aliases(primary, merged), at=now)
    moved, ends = await knowledge_edges.repoint_edges(conn, user_id, primary_id, gone)
    display = {"title": primary.name, "subtitle": primary.type, "description": primary.description}
    await cards.move_concept_cards(conn, user_id, primary_id, gone, display=display)
    await growth_events.repoint_entity(conn, user_id, primary_id, gone)
    artifacts = await derived_artifacts.repoint_concept_sources(conn, user_id, primary_id, gone)
    groups = await communities.repoint_members(conn, user_id, primary_id, gone)
    summary.concepts_merged += len(gone)
    summary.relationships_moved += moved
    return [
        *outbox.changes(NodeLabel.CONCEPT, [primary_id, *gone]),
        *(outbox.Change(label, entity_id) for label, entity_id in ends),
        *outbox.changes(NodeLabel.DERIVED_ARTIFACT, artifacts),
        *outbox.changes(NodeLabel.COMMUNITY, groups),
    ]


def _aliases(primary: ConceptRecord, merged: Sequence[ConceptRecord]) -> list[str]:
    """The primary's aliases plus every name the merged concepts went by (their normalized names and aliases)."""
    names = list(primary.aliases)
    for concept in merged:
        names.append(concept.normalized_name or normalize_concept_name(concept.name))
        names += concept.aliases
    return [alias for alias in dict.fromkeys(names) if alias and alias != primary.normalized_name]


async def _write_artifacts(
    conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """The cycle's artifacts (deterministic ids) with their source links, and a card for each one inserted. A goal
    achievement story is written once per goal: one of a goal that has its story (an earlier cycle's, or one that a
    merge brought over) or that is not the user's concept any more is left out, and its id is the goal's
    (core.insight.goal_story_id)."""
    user_id, drafts = result.user_id, result.artifacts
    told = await derived_artifacts.concepts_with_artifact(
        conn,
        user_id,
        ArtifactType.GOAL_ACHIEVEMENT_STORY.value,
        [a.goal_concept_id for a in drafts if a.goal_concept_id],
    )
    units = await memory_units.existing_memory_unit_ids(conn, user_id, (m for a in drafts for m in a.memory_unit_ids))
    alive = await concepts.existing_concept_ids(conn, user_id, (c for a in drafts for c in a.concept_ids))
    drafts = [a for a in drafts if a.goal_concept_id is None or a.goal_concept_id in alive]  # (still) the user's
    drafts = [a for a in drafts if a.goal_concept_id not in told]  # one story per goal, whatever its id
    stamp = {"cycle_start": result.cycle_start.isoformat(), "model": result.model, "prompt": result.prompt_version}

    def artifact(draft: ArtifactDraft) -> NewArtifact:
        unit_ids = [m for m in draft.memory_unit_ids if m in units]
        concept_ids = [c for c in draft.concept_ids if c in alive]
        goal = {"goal_concept_id": draft.goal_concept_id} if draft.goal_concept_id else {}
        return NewArtifact(
            artifact_id=draft.artifact_id(result.cycle),
            artifact_type=draft.artifact_type.stored_type.value,
            title=draft.title,
            content_narrative=draft.narrative,
            content_data={
                **stamp,
                "insight_kind": draft.artifact_type.value,
                **goal,
                "source_memory_unit_ids": unit_ids,
                "source_concept_ids": concept_ids,
            },
            source_memory_unit_id=unit_ids[0] if unit_ids else None,
            source_concept_id=concept_ids[0] if concept_ids else None,
        )

    inserted = await derived_artifacts.insert_artifacts(
        conn, user_id, [artifact(draft) for draft in drafts], generated_by=GENERATED_BY
    )
    summary.artifacts = len(inserted)
    summary.cards = await cards.insert_cards_for_new_entities(
        conn,
        user_id,
        [
            NewCard(
                card_type=a.artifact_type,
                source_entity_id=a.artifact_id,
                source_entity_type="DerivedArtifact",
                display_data={
                    "title": a.title,
                    "preview": (a.content_narrative or "")[:280],
                    "artifact_type": a.artifact_type,
                    "insight_kind": (a.content_data or {}).get("insight_kind"),
                },
            )
            for a in inserted
        ],
    )
    return outbox.changes(NodeLabel.DERIVED_ARTIFACT, (a.artifact_id for a in inserted))


async def _write_growth(conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary) -> None:
    """The cycle's growth events (source InsightAgent, deterministic ids), about entities that still exist."""
    user_id, drafts = result.user_id, result.growth_events
    units = (g.entity_id for g in drafts if g.entity_kind is EntityKind.MEMORY_UNIT)
    ideas = (g.entity_id for g in drafts if g.entity_kind is EntityKind.CONCEPT)
    alive = await memory_units.existing_memory_unit_ids(conn, user_id, units)
    alive |= await concepts.existing_concept_ids(conn, user_id, ideas)
    summary.growth_events = await growth_events.insert_growth_events(
        conn,
        user_id,
        [
            NewGrowthEvent(
                event_id=insight_row_id(result.cycle, g.key),
                entity_id=g.entity_id,
                entity_type=g.entity_kind.value,
                dim_key=g.dim_key.value,
                delta=g.delta,
                source=GENERATED_BY,
                details={"rationale": g.rationale, "cycle_start": result.cycle_start.isoformat()},
            )
            for g in drafts
            if g.entity_id in alive
        ],
    )


async def _write_communities(
    conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """This cycle's communities: a reused one is updated in place, a new one inserted (deterministic id), one no
    longer found deleted; then every active concept's community_id follows. Members are only this user's active
    concepts (a merge earlier in this transaction may have removed some), each in one community."""
    user_id = result.user_id
    previous = {c.community_id for c in await communities.list_communities(conn, user_id)}
    wanted = (c for d in result.communities for c in d.concept_ids)
    active = await concepts.existing_concept_ids(conn, user_id, wanted, active=True)
    members: dict[str, str] = {}
    reused: list[CommunityRow] = []
    created: list[CommunityRow] = []
    for draft in result.communities:
        alive = sorted(c for c in draft.concept_ids if c in active and c not in members)  # one community each
        if len(alive) < 2:
            continue
        existing = draft.existing_id if draft.existing_id in previous else None
        row = CommunityRow(
            community_id=existing or insight_row_id(result.cycle, draft.key),
            name=draft.name,
            description=draft.description,
            members=alive,
            metadata={"cycle_start": result.cycle_start.isoformat(), "size": len(alive)},
        )
        (reused if existing else created).append(row)
        members.update(dict.fromkeys(alive, row.community_id))
    now, method = utc_now(), result.detection_method
    await communities.update_communities(conn, user_id, reused, detection_method=method, at=now)
    await communities.insert_communities(conn, user_id, created, detection_method=method, at=now)
    # concepts first, so those of a community about to go are regrouped (and reported) rather than silently
    # nulled by the foreign key
    regrouped = await concepts.regroup(conn, user_id, members, at=now)
    kept = [row.community_id for row in (*reused, *created)]
    gone = sorted(previous - set(kept))
    await communities.delete_communities(conn, user_id, gone)
    summary.communities = {
        "created": len(created),
        "reused": len(reused),
        "removed": len(gone),
        "concepts_regrouped": len(regrouped),
    }
    return [*outbox.changes(NodeLabel.COMMUNITY, [*kept, *gone]), *outbox.changes(NodeLabel.CONCEPT, regrouped)]
