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

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.insight import (
    GENERATED_BY,
    ArtifactDraft,
    InsightGrowthDraft,
    InsightResult,
    InsightStatus,
    MergeDraft,
    insight_row_id,
    summary_artifact_id,
)
from core.vocabulary import EntityKind, NodeLabel, StructuralRelationshipType, normalize_concept_name
from store import outbox
from store.cycles import lock_current_cycle
from store.postgres import Executor
from store.repos import cards
from store.repos._base import row_count, to_db, transaction, utc_now
from store.repos.cards import NewCard

_STRUCTURAL = [kind.value for kind in StructuralRelationshipType]
_NODE = {"MemoryUnit": NodeLabel.MEMORY_UNIT, "Concept": NodeLabel.CONCEPT}


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
        next_package = await conn.fetchval(
            "SELECT next_conversation_context_package FROM users WHERE user_id = $1", user_id
        )
        if await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM derived_artifacts WHERE artifact_id = $2 AND user_id = $1)",
            user_id,
            summary_artifact_id(cycle),
        ):
            summary.outcome = "already_written"
            return summary

        changed: list[outbox.Change] = [outbox.Change(NodeLabel.USER, user_id)]
        for merge in result.merges:
            changed += await _merge_concepts(conn, user_id, merge, summary)
        changed += await _write_artifacts(conn, result, summary)
        await _write_growth(conn, result, summary)
        changed += await _write_communities(conn, result, summary)
        await conn.execute(
            "UPDATE users SET memory_profile = $2, knowledge_graph_schema = $3, "
            "next_conversation_context_package = COALESCE($4::jsonb, next_conversation_context_package) "
            "WHERE user_id = $1",
            user_id,
            result.memory_profile,
            result.knowledge_graph_schema,
            _next_context(result, next_package),
        )
        await outbox.record_changes(conn, user_id, changed)  # the graph and vector stores follow this commit
    return summary


def _next_context(result: InsightResult, current: Any) -> dict[str, Any] | None:
    """The package for the user's next conversation, unless a conversation newer than the cycle's latest one has
    already written its own since the material was read (ingestion's rule: the newest conversation's outlook wins)."""
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
        "source": GENERATED_BY,
        "cycle_start": result.cycle_start.isoformat(),
        "source_conversation_id": latest.conversation_id,
        "source_conversation_start_time": latest.start_time.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(),
    }


async def _merge_concepts(
    conn: asyncpg.Connection, user_id: str, merge: MergeDraft, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """Merge the secondaries into the primary (see the module docstring); returns what changed, for the outbox.

    Only active concepts of this user take part: a primary that is gone or merged itself cancels the merge, and a
    secondary that is already merged, another user's or the primary itself is skipped, so a repeated merge changes
    nothing.
    """
    primary = await conn.fetchrow(
        "SELECT concept_id, name, type, description, metadata FROM concepts "
        "WHERE user_id = $1 AND concept_id = $2 AND status = 'active' FOR UPDATE",
        user_id,
        merge.primary_id,
    )
    if primary is None:
        return []
    now = to_db(utc_now())
    merged = await conn.fetch(
        "UPDATE concepts SET status = 'merged', merged_into_concept_id = $2, community_id = NULL, "
        "last_updated_ts = $4 WHERE user_id = $1 AND concept_id = ANY($3::text[]) AND concept_id <> $2 "
        "AND status = 'active' RETURNING concept_id, name, salience, metadata",
        user_id,
        merge.primary_id,
        list(merge.secondary_ids),
        now,
    )
    if not merged:
        return []
    primary_id, gone = merge.primary_id, [row["concept_id"] for row in merged]
    await conn.execute(
        "UPDATE concepts SET metadata = jsonb_set(CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
        "ELSE '{}'::jsonb END, '{aliases}', to_jsonb($3::text[])), salience = GREATEST(salience, $4), "
        "last_updated_ts = $5 WHERE user_id = $1 AND concept_id = $2",
        user_id,
        primary_id,
        _aliases(primary["metadata"], merged),
        max((row["salience"] for row in merged if row["salience"] is not None), default=None),
        now,
    )
    moved, ends = await _move_relationships(conn, user_id, primary_id, gone)
    await _move_cards(conn, user_id, primary, gone)
    await conn.execute(
        "UPDATE growth_events SET entity_id = $2 WHERE user_id = $1 AND entity_type = 'Concept' "
        "AND entity_id = ANY($3::text[])",
        user_id,
        primary_id,
        gone,
    )
    artifacts = await conn.fetch(
        """
        UPDATE derived_artifacts SET
            source_concept_id = CASE WHEN source_concept_id = ANY($3::text[]) THEN $2 ELSE source_concept_id END,
            content_data = CASE WHEN jsonb_typeof(content_data->'source_concept_ids') = 'array' THEN jsonb_set(
                content_data, '{source_concept_ids}', (SELECT COALESCE(jsonb_agg(DISTINCT
                    CASE WHEN x = ANY($3::text[]) THEN $2 ELSE x END), '[]'::jsonb)
                    FROM jsonb_array_elements_text(content_data->'source_concept_ids') AS x))
                ELSE content_data END
        WHERE user_id = $1 AND (source_concept_id = ANY($3::text[])
            OR (jsonb_typeof(content_data->'source_concept_ids') = 'array'
                AND content_data->'source_concept_ids' ?| $3::text[]))
        RETURNING artifact_id
        """,
        user_id,
        primary_id,
        gone,
    )
    groups = await conn.fetch(
        "UPDATE communities SET core_concept_ids = ARRAY(SELECT DISTINCT CASE WHEN x = ANY($3::text[]) THEN $2 "
        "ELSE x END FROM unnest(core_concept_ids) AS x ORDER BY 1) "
        "WHERE user_id = $1 AND core_concept_ids && $3::text[] RETURNING community_id",
        user_id,
        primary_id,
        gone,
    )
    summary.concepts_merged += len(gone)
    summary.relationships_moved += moved
    return [
        *outbox.changes(NodeLabel.CONCEPT, [primary_id, *gone]),
        *(outbox.Change(label, entity_id) for label, entity_id in ends),
        *outbox.changes(NodeLabel.DERIVED_ARTIFACT, (row["artifact_id"] for row in artifacts)),
        *outbox.changes(NodeLabel.COMMUNITY, (row["community_id"] for row in groups)),
    ]


def _aliases(metadata: Any, merged: Sequence[asyncpg.Record]) -> list[str]:
    """The primary's aliases plus every name the merged concepts went by (their normalized names and aliases)."""
    own = metadata if isinstance(metadata, dict) else {}
    name = own.get("normalized_name")
    names: list[str] = [a for a in own.get("aliases") or [] if isinstance(a, str)]
    for row in merged:
        theirs = row["metadata"] if isinstance(row["metadata"], dict) else {}
        names.append(theirs.get("normalized_name") or normalize_concept_name(row["name"]))
        names += [a for a in theirs.get("aliases") or [] if isinstance(a, str)]
    return [alias for alias in dict.fromkeys(names) if alias and alias != name]


async def _move_relationships(
    conn: asyncpg.Connection, user_id: str, primary_id: str, gone: Sequence[str]
) -> tuple[int, set[tuple[NodeLabel, str]]]:
    """Repoint the truth rows touching the merged concepts at the primary, in two statements: delete them, insert
    them back remapped (one per relationship: the stronger wins; a link between the two merged concepts goes). Moved
    rows leave the embedded graph (in_graph false) until the outbox dispatcher applies them. Returns how many rows
    touched the merged concepts, and the entities at both ends of them."""
    rows = await conn.fetch(
        "DELETE FROM runtime.knowledge_edges WHERE user_id = $1 AND relationship_type <> ALL($3::text[]) "
        "AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[])) RETURNING *",
        user_id,
        list(gone),
        _STRUCTURAL,
    )
    merged = set(gone)
    moved: dict[tuple[str, str, str], asyncpg.Record] = {}
    targets: dict[tuple[str, str, str], tuple[str, str]] = {}
    ends: set[tuple[NodeLabel, str]] = set()
    for row in sorted(rows, key=lambda r: (-r["strength"], r["edge_id"])):
        source = primary_id if row["source_id"] in merged else row["source_id"]
        target = primary_id if row["target_id"] in merged else row["target_id"]
        for kind, entity in ((row["source_type"], row["source_id"]), (row["target_type"], row["target_id"])):
            if kind in _NODE and entity not in merged:
                ends.add((_NODE[kind], entity))
        key = (source, row["relationship_type"], target)
        if source != target and key not in moved:
            moved[key], targets[key] = row, (source, target)
    await conn.executemany(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength, description, source_conversation_id, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT ON CONSTRAINT knowledge_edges_unique "
        "DO UPDATE SET strength = GREATEST(knowledge_edges.strength, EXCLUDED.strength), "
        "description = COALESCE(knowledge_edges.description, EXCLUDED.description), updated_at = now(), "
        "in_graph = false",
        [
            (
                row["edge_id"],
                user_id,
                targets[key][0],
                row["source_type"],
                targets[key][1],
                row["target_type"],
                row["relationship_type"],
                row["strength"],
                row["description"],
                row["source_conversation_id"],
                row["created_at"],
            )
            for key, row in moved.items()
        ],
    )
    return len(rows), ends


async def _move_cards(conn: asyncpg.Connection, user_id: str, primary: asyncpg.Record, gone: Sequence[str]) -> None:
    """The primary keeps its card, or takes over the oldest card of a merged concept; the merged concepts' other
    cards go, and a favourite among them makes the kept card a favourite."""
    rows = await conn.fetch(
        "SELECT card_id, source_entity_id, is_favorited FROM cards WHERE user_id = $1 "
        "AND source_entity_type = 'Concept' AND source_entity_id = ANY($2::text[]) ORDER BY created_at, card_id",
        user_id,
        [primary["concept_id"], *gone],
    )
    if not rows:
        return
    kept = next((r for r in rows if r["source_entity_id"] == primary["concept_id"]), rows[0])
    favourite = any(r["is_favorited"] for r in rows)
    display = {"title": primary["name"], "subtitle": primary["type"], "description": primary["description"]}
    await conn.execute(
        "UPDATE cards SET source_entity_id = $3, is_favorited = $4, updated_at = $5, "
        "display_data = CASE WHEN source_entity_id = $3 THEN display_data ELSE $6::jsonb END "
        "WHERE user_id = $1 AND card_id = $2",
        user_id,
        kept["card_id"],
        primary["concept_id"],
        favourite,
        to_db(utc_now()),
        display,
    )
    await conn.execute(
        "DELETE FROM cards WHERE user_id = $1 AND card_id = ANY($2::text[])",
        user_id,
        [r["card_id"] for r in rows if r["card_id"] != kept["card_id"]],
    )


async def _existing(
    conn: asyncpg.Connection, user_id: str, table: str, key: str, ids: Iterable[str], *, active: bool = False
) -> set[str]:
    """Which of `ids` are still rows of this user (a memory unit can go with a reprocessed conversation); with
    `active`, only concepts that are not merged or archived."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    only_active = " AND status = 'active'" if active else ""
    rows = await conn.fetch(
        f"SELECT {key} FROM {table} WHERE user_id = $1 AND {key} = ANY($2::text[]){only_active}", user_id, wanted
    )
    return {row[key] for row in rows}


async def _write_artifacts(
    conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """The cycle's artifacts (deterministic ids) with their source links, and a card for each one inserted."""
    user_id, drafts = result.user_id, result.artifacts
    units = await _existing(conn, user_id, "memory_units", "muid", (m for a in drafts for m in a.memory_unit_ids))
    concepts = await _existing(conn, user_id, "concepts", "concept_id", (c for a in drafts for c in a.concept_ids))
    stamp = {"cycle_start": result.cycle_start.isoformat(), "model": result.model, "prompt": result.prompt_version}

    def row(draft: ArtifactDraft) -> tuple[Any, ...]:
        unit_ids = [m for m in draft.memory_unit_ids if m in units]
        concept_ids = [c for c in draft.concept_ids if c in concepts]
        data = {**stamp, "source_memory_unit_ids": unit_ids, "source_concept_ids": concept_ids}
        return (
            insight_row_id(result.cycle, f"artifact:{draft.key}")
            if draft.key != "insight_summary"
            else summary_artifact_id(result.cycle),
            draft.artifact_type.value,
            draft.title,
            draft.narrative,
            json.dumps(data),
            unit_ids[0] if unit_ids else None,
            concept_ids[0] if concept_ids else None,
        )

    rows = [row(draft) for draft in drafts]
    inserted = await conn.fetch(
        "INSERT INTO derived_artifacts (artifact_id, user_id, artifact_type, title, content_narrative, content_data, "
        "source_memory_unit_id, source_concept_id, generated_by_agent, created_at) "
        "SELECT a.id, $1, a.type, a.title, a.narrative, a.data::jsonb, a.unit, a.concept, $2, $3 "
        "FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) "
        "AS a(id, type, title, narrative, data, unit, concept) "
        "ON CONFLICT (artifact_id) DO NOTHING RETURNING artifact_id, artifact_type, title, content_narrative",
        user_id,
        GENERATED_BY,
        to_db(utc_now()),
        *([r[i] for r in rows] for i in range(7)),
    )
    summary.artifacts = len(inserted)
    summary.cards = await cards.insert_cards_for_new_entities(
        conn,
        user_id,
        [
            NewCard(
                card_type=r["artifact_type"],
                source_entity_id=r["artifact_id"],
                source_entity_type="DerivedArtifact",
                display_data={
                    "title": r["title"],
                    "preview": (r["content_narrative"] or "")[:280],
                    "artifact_type": r["artifact_type"],
                },
            )
            for r in inserted
        ],
    )
    return outbox.changes(NodeLabel.DERIVED_ARTIFACT, (r["artifact_id"] for r in inserted))


async def _write_growth(conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary) -> None:
    """The cycle's growth events (source InsightAgent, deterministic ids), about entities that still exist."""
    user_id, drafts = result.user_id, result.growth_events
    alive = await _existing(
        conn, user_id, "memory_units", "muid", (g.entity_id for g in drafts if g.entity_kind is EntityKind.MEMORY_UNIT)
    ) | await _existing(
        conn, user_id, "concepts", "concept_id", (g.entity_id for g in drafts if g.entity_kind is EntityKind.CONCEPT)
    )
    kept: list[InsightGrowthDraft] = [g for g in drafts if g.entity_id in alive]
    if not kept:
        return
    details = [json.dumps({"rationale": g.rationale, "cycle_start": result.cycle_start.isoformat()}) for g in kept]
    status = await conn.execute(
        "INSERT INTO growth_events (event_id, user_id, entity_id, entity_type, dim_key, delta, source, created_at, "
        "details) SELECT g.id, $1, g.entity, g.kind, g.dim, g.delta, $2, $3, g.details::jsonb "
        "FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::float8[], $9::text[]) "
        "AS g(id, entity, kind, dim, delta, details) ON CONFLICT (event_id) DO NOTHING",
        user_id,
        GENERATED_BY,
        to_db(utc_now()),
        [insight_row_id(result.cycle, g.key) for g in kept],
        [g.entity_id for g in kept],
        [g.entity_kind.value for g in kept],
        [g.dim_key.value for g in kept],
        [g.delta for g in kept],
        details,
    )
    summary.growth_events = row_count(status)


async def _write_communities(
    conn: asyncpg.Connection, result: InsightResult, summary: InsightWriteSummary
) -> list[outbox.Change]:
    """This cycle's communities: a reused one is updated in place, a new one inserted (deterministic id), one no
    longer found deleted; then every active concept's community_id follows. Members are only this user's active
    concepts (a merge earlier in this transaction may have removed some), each in one community. A statement per
    kind of change, not per community: a large graph has thousands."""
    user_id = result.user_id
    rows = await conn.fetch("SELECT community_id FROM communities WHERE user_id = $1", user_id)
    previous = {row["community_id"] for row in rows}
    active = await _existing(
        conn, user_id, "concepts", "concept_id", (c for d in result.communities for c in d.concept_ids), active=True
    )
    members: dict[str, str] = {}
    reused: list[dict[str, Any]] = []
    created: list[dict[str, Any]] = []
    for draft in result.communities:
        alive = sorted(c for c in draft.concept_ids if c in active and c not in members)  # one community each
        if len(alive) < 2:
            continue
        existing = draft.existing_id if draft.existing_id in previous else None
        community_id = existing or insight_row_id(result.cycle, draft.key)
        row = {
            "id": community_id,
            "name": draft.name,
            "description": draft.description,
            "members": alive,
            "metadata": {"cycle_start": result.cycle_start.isoformat(), "size": len(alive)},
        }
        (reused if existing else created).append(row)
        members.update(dict.fromkeys(alive, community_id))
    now = to_db(utc_now())
    rows_of = (
        "FROM jsonb_to_recordset($2::jsonb) AS r(id text, name text, description text, members jsonb, metadata jsonb)"
    )
    members_of = "ARRAY(SELECT jsonb_array_elements_text(r.members))"
    if reused:
        await conn.execute(
            f"UPDATE communities c SET name = r.name, description = r.description, core_concept_ids = {members_of}, "
            f"detection_method = $3, metadata = r.metadata, last_analyzed_ts = $4 {rows_of} "
            "WHERE c.user_id = $1 AND c.community_id = r.id",
            user_id,
            reused,
            result.detection_method,
            now,
        )
    if created:
        await conn.execute(
            "INSERT INTO communities (community_id, user_id, name, description, core_concept_ids, detection_method, "
            f"created_at, last_analyzed_ts, metadata) SELECT r.id, $1, r.name, r.description, {members_of}, $3, $4, "
            f"$4, r.metadata {rows_of} ON CONFLICT (community_id) DO NOTHING",
            user_id,
            created,
            result.detection_method,
            now,
        )
    # concepts first, so those of a community about to go are regrouped (and reported) rather than silently
    # nulled by the foreign key
    regrouped = await conn.fetch(
        "UPDATE concepts c SET community_id = m.community_id, last_updated_ts = $2 "
        "FROM (SELECT concept_id FROM concepts WHERE user_id = $1 AND (status = 'active' OR community_id IS NOT NULL)) "
        "AS cur LEFT JOIN unnest($3::text[], $4::text[]) AS m(concept_id, community_id) "
        "ON m.concept_id = cur.concept_id "
        "WHERE c.user_id = $1 AND c.concept_id = cur.concept_id AND c.community_id IS DISTINCT FROM m.community_id "
        "RETURNING c.concept_id",
        user_id,
        now,
        list(members),
        list(members.values()),
    )
    kept = [row["id"] for row in (*reused, *created)]
    gone = sorted(previous - set(kept))
    if gone:
        await conn.execute(
            "DELETE FROM communities WHERE user_id = $1 AND community_id = ANY($2::text[])", user_id, gone
        )
    summary.communities = {
        "created": len(created),
        "reused": len(reused),
        "removed": len(gone),
        "concepts_regrouped": len(regrouped),
    }
    return [
        *outbox.changes(NodeLabel.COMMUNITY, [*kept, *gone]),
        *outbox.changes(NodeLabel.CONCEPT, (r["concept_id"] for r in regrouped)),
    ]
