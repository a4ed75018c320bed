"""A growth cycle's end: what the report reads (windows of the user's rows), the report it writes, the reset.

Why one transaction, gated on the user row: the report artifact has an id derived from the user and the cycle start,
so a second run for the same cycle (a crash after the LLM call, a duplicate enqueue, a manual trigger) inserts
nothing (ON CONFLICT DO NOTHING) and adds no card; the reset (`last_cycle_started_at` = now,
`concepts_created_in_cycle` = 0) is a conditional transition on the locked user row, taken only while the row's
current cycle is still the reported one, so it happens once (store/cycles.py). The report's ids derive from the cycle
(core/cycle.py), as the chain's job ids do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.cycle import MEMORY_LEARNED_AT, Cycle
from core.vocabulary import AgentName, ArtifactType, NodeLabel, RelationshipType
from store import outbox
from store.cycles import lock_current_cycle, reset_cycle
from store.postgres import Executor
from store.repos import cards, derived_artifacts
from store.repos._base import to_db, transaction
from store.repos.derived_artifacts import NewArtifact

REPORT_TYPE = ArtifactType.CYCLE_REPORT.value
REPORT_AGENT = AgentName.CYCLE_REPORT.value


def report_id(cycle: Cycle) -> str:
    """The cycle's report artifact: its existence means the cycle is reported."""
    return cycle.row_id(REPORT_TYPE)


@dataclass(frozen=True)
class GrowthSums:
    this_cycle: float
    previous_cycle: float
    events: int


@dataclass(frozen=True)
class CycleWindows:
    """The reported cycle [start, end) and the one before it, [previous_start, start)."""

    previous_start: datetime
    start: datetime
    end: datetime


@dataclass
class CycleRows:
    """What the report is computed from; everything bounded (grouped sums, counts, a few top rows)."""

    growth: dict[str, GrowthSums] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    top_concepts: list[dict[str, Any]] = field(default_factory=list)
    highlights: list[dict[str, Any]] = field(default_factory=list)
    insights: list[dict[str, Any]] = field(default_factory=list)


_LEARNED = f"m.{MEMORY_LEARNED_AT} >= $2 AND m.{MEMORY_LEARNED_AT} < $3"
"""A memory unit learned in the window (core/cycle.CycleWindow: what belongs to a cycle)."""

_COUNTS = f"""
SELECT
  (SELECT count(DISTINCT c.id) FROM memory_units m
     JOIN conversations c ON c.id = m.source_conversation_id AND c.user_id = m.user_id AND c.status = 'processed'
     WHERE m.user_id = $1 AND {_LEARNED}) AS conversations,
  (SELECT count(*) FROM memory_units m WHERE m.user_id = $1 AND {_LEARNED}) AS memory_units,
  (SELECT count(*) FROM concepts WHERE user_id = $1 AND created_at >= $2 AND created_at < $3) AS concepts_created,
  (SELECT count(*) FROM growth_events WHERE user_id = $1 AND created_at >= $2 AND created_at < $3) AS growth_events,
  (SELECT count(*) FROM derived_artifacts WHERE user_id = $1 AND artifact_type <> 'cycle_report'
     AND created_at >= $2 AND created_at < $3) AS insights,
  (SELECT count(*) FROM proactive_prompts WHERE user_id = $1 AND created_at >= $2 AND created_at < $3) AS prompts
"""

_GROWTH = """
SELECT dim_key,
  COALESCE(SUM(delta) FILTER (WHERE created_at >= $2), 0)::float8 AS this_cycle,
  COALESCE(SUM(delta) FILTER (WHERE created_at < $2), 0)::float8 AS previous_cycle,
  count(*) FILTER (WHERE created_at >= $2) AS events
FROM growth_events WHERE user_id = $1 AND created_at >= $3 AND created_at < $4
GROUP BY dim_key ORDER BY dim_key
"""

_EXTRACTED = ", ".join(f"'{kind.value}'" for kind in RelationshipType)

_TOP_CONCEPTS = f"""
SELECT c.concept_id, c.name, c.type, count(DISTINCT m.muid) AS mentions
FROM memory_units m
JOIN runtime.knowledge_edges e ON e.user_id = m.user_id AND e.source_id = m.muid AND e.target_type = 'Concept'
    AND e.relationship_type IN ({_EXTRACTED})
JOIN concepts c ON c.concept_id = e.target_id AND c.user_id = m.user_id AND c.status = 'active'
WHERE m.user_id = $1 AND {_LEARNED}
GROUP BY c.concept_id, c.name, c.type, c.salience
ORDER BY mentions DESC, c.salience DESC NULLS LAST, c.name, c.concept_id LIMIT $4
"""

_MEMORY_HIGHLIGHTS = f"""
SELECT muid, title, content, importance_score FROM memory_units m
WHERE m.user_id = $1 AND {_LEARNED}
ORDER BY importance_score DESC NULLS LAST, creation_ts DESC, muid LIMIT $4
"""

_INSIGHTS = """
SELECT artifact_id, artifact_type, title, content_narrative FROM derived_artifacts
WHERE user_id = $1 AND artifact_type <> 'cycle_report' AND created_at >= $2 AND created_at < $3
ORDER BY created_at DESC, artifact_id LIMIT $4
"""


async def read_cycle_rows(db: Executor, user_id: str, windows: CycleWindows, *, top: int = 5) -> CycleRows:
    """The cycle's counts, growth sums per dimension (this cycle and the one before), top concepts by mentions (how
    many of the cycle's memory units an extracted relationship joins to each: the embedded graph's own rows in the
    same table are not mentions), the most important memory units and the cycle's insight artifacts (`top` of each)."""
    start, end, previous = to_db(windows.start), to_db(windows.end), to_db(windows.previous_start)
    rows = CycleRows()
    counts = await db.fetchrow(_COUNTS, user_id, start, end)
    rows.counts = {name: int(value) for name, value in dict(counts).items()}
    for row in await db.fetch(_GROWTH, user_id, start, previous, end):
        rows.growth[row["dim_key"]] = GrowthSums(row["this_cycle"], row["previous_cycle"], row["events"])
    rows.top_concepts = [dict(row) for row in await db.fetch(_TOP_CONCEPTS, user_id, start, end, top)]
    rows.highlights = [dict(row) for row in await db.fetch(_MEMORY_HIGHLIGHTS, user_id, start, end, top)]
    rows.insights = [dict(row) for row in await db.fetch(_INSIGHTS, user_id, start, end, top)]
    return rows


async def report_exists(db: Executor, cycle: Cycle) -> bool:
    """Whether the cycle's report is written (its id is the cycle's own)."""
    return await derived_artifacts.artifact_exists(db, cycle.user_id, report_id(cycle))


@dataclass(frozen=True)
class NewCycleReport:
    cycle: Cycle
    title: str
    narrative: str | None
    content_data: dict[str, Any]
    with_card: bool
    """An empty cycle's minimal report gets no card: there is nothing on it to show on the canvas."""


@dataclass
class CycleReportWriteSummary:
    artifact_id: str
    outcome: str  # "written" or "already_written"
    card: bool = False
    reset: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"artifact_id": self.artifact_id, "outcome": self.outcome, "card": self.card, "reset": self.reset}


async def write_cycle_report(
    db: Executor, report: NewCycleReport, *, reset_at: datetime | None
) -> CycleReportWriteSummary:
    """Insert the report (once per cycle), its card, and, when `reset_at` is given and the user's current cycle is
    still the reported one, start the next cycle at `reset_at` (store/cycles.py); all in one transaction with its
    outbox rows."""
    cycle, user_id = report.cycle, report.cycle.user_id
    artifact_id = report_id(cycle)
    summary = CycleReportWriteSummary(artifact_id, outcome="written")
    async with transaction(db) as conn:
        current = await lock_current_cycle(conn, user_id)  # a user deleted meanwhile is a PermanentError
        inserted = await derived_artifacts.insert_artifacts(
            conn,
            user_id,
            [
                NewArtifact(
                    artifact_id=artifact_id,
                    artifact_type=REPORT_TYPE,
                    title=report.title,
                    content_narrative=report.narrative,
                    content_data=report.content_data,
                )
            ],
            generated_by=REPORT_AGENT,
        )
        changed: list[outbox.Change] = []
        if not inserted:
            summary.outcome = "already_written"
        else:
            changed.append(outbox.Change(NodeLabel.DERIVED_ARTIFACT, artifact_id))
            if report.with_card:
                _, summary.card = await cards.ensure_card(
                    conn,
                    user_id,
                    card_type=REPORT_TYPE,
                    source_entity_id=artifact_id,
                    source_entity_type="DerivedArtifact",
                    display_data={"title": report.title, "preview": (report.narrative or "")[:280]},
                    card_id=cycle.row_id("cycle_report_card"),
                )
        if reset_at is not None and current == cycle and await reset_cycle(conn, cycle, reset_at):
            summary.reset = True
            changed.append(outbox.Change(NodeLabel.USER, user_id))
        await outbox.record_changes(conn, user_id, changed)
    return summary
