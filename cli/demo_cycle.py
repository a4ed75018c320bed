"""What the demo shows once a cycle has run: the cycle report, the proactive prompts delivered through the
next-conversation package, the communities, the derived stores (graph, vectors) and a recall through them, read back
through store/ and drawn with rich."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from core.vocabulary import ArtifactType
from store import outbox
from store.postgres import Executor
from store.repos import communities, derived_artifacts, graph_projections, proactive_prompts, users
from store.repos.communities import CommunityRecord
from store.repos.derived_artifacts import DerivedArtifactRecord
from store.repos.proactive_prompts import ProactivePromptRecord

RECALL_QUERY = "how is my running going?"
"""What the demo asks the stores to remember about the sample user."""


@dataclass(frozen=True)
class Delivery:
    """What the demo, in the web app's place, did with the package's first prompt (docs/contract.md)."""

    prompt_text: str
    delivered_now: bool  # False: an earlier run (or a web app) delivered it already


async def deliver_first_prompt(db: Executor, user_id: str) -> Delivery | None:
    """Claim the package's first prompt the way the web app does (`status = 'delivered'` only from `pending`); None
    when the package carries no prompt the companion may still ask."""
    user = await users.get_user(db, user_id)
    packaged = (user.next_conversation_context_package or {}).get("proactive_prompts") if user else None
    now = datetime.now(UTC)
    for entry in packaged if isinstance(packaged, list) else []:
        if isinstance(entry, dict) and _still_deliverable(entry, now):
            delivered = await proactive_prompts.mark_delivered(db, user_id, str(entry["prompt_id"]), at=now)
            return Delivery(prompt_text=str(entry["prompt_text"]), delivered_now=delivered)
    return None


def _still_deliverable(entry: dict[str, Any], now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(entry.get("expires_at"))) > now
    except ValueError:
        return False  # written by someone else: not a prompt the companion may ask


@dataclass
class CycleView:
    report: DerivedArtifactRecord | None
    insights: list[DerivedArtifactRecord]
    prompts: list[ProactivePromptRecord]
    packaged: list[dict[str, Any]]
    delivery: Delivery | None
    communities: list[CommunityRecord]
    projection_nodes: int
    graph_nodes: int
    graph_relationships: dict[str, int]
    """Per type, those the user has (the graph store's own count)."""
    vector_items: int
    backlog: int
    recalled: list[Any]


async def load_cycle(
    db: Executor, user_id: str, recalled: list[Any], relationships: dict[str, int], delivery: Delivery | None
) -> CycleView:
    reports = await derived_artifacts.list_derived_artifacts(db, user_id, artifact_type="cycle_report")
    artifacts = await derived_artifacts.list_derived_artifacts(db, user_id)
    projection = await graph_projections.latest_graph_projection(db, user_id)
    nodes = (projection.projection_data or {}).get("nodes", []) if projection else []
    user = await users.get_user(db, user_id)
    packaged = (user.next_conversation_context_package or {}).get("proactive_prompts") if user else None
    return CycleView(
        report=max(reports, key=lambda r: r.created_at) if reports else None,
        insights=[a for a in artifacts if a.artifact_type != "cycle_report"],
        prompts=await proactive_prompts.list_proactive_prompts(db, user_id),
        packaged=[entry for entry in packaged if isinstance(entry, dict)] if isinstance(packaged, list) else [],
        delivery=delivery,
        communities=await communities.list_communities(db, user_id),
        projection_nodes=len(nodes) if isinstance(nodes, list) else 0,
        graph_nodes=await db.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE user_id = $1", user_id),
        graph_relationships=relationships,
        vector_items=await db.fetchval("SELECT count(*) FROM runtime.vector_items WHERE user_id = $1", user_id),
        backlog=sum(b.rows for b in await outbox.backlog(db)),
        recalled=recalled,
    )


def render_cycle(console: Console, view: CycleView) -> None:
    if view.report is not None:
        data = view.report.content_data or {}
        growth = Table("dimension", "this cycle", "previous", "change", title="Growth this cycle")
        for dimension, row in (data.get("growth") or {}).items():
            if isinstance(row, dict):
                growth.add_row(
                    dimension,
                    f"{row.get('this_cycle', 0):+.2f}",
                    f"{row.get('previous_cycle', 0):+.2f}",
                    f"{row.get('change', 0):+.2f}",
                )
        console.print(
            Panel(view.report.content_narrative or "(a quiet cycle)", title=f"Cycle report: {view.report.title}")
        )
        console.print(growth)
    table = Table("insight", "type", title=f"Insights ({len(view.insights)})")
    for artifact in view.insights:
        table.add_row(artifact.title, artifact.artifact_type)
    console.print(table)
    for story in (a for a in view.insights if a.artifact_type == ArtifactType.GOAL_ACHIEVEMENT_STORY):
        console.print(Panel(story.content_narrative or "", title=f"Goal reached: {story.title}"))
    status = {prompt.prompt_id: prompt.status for prompt in view.prompts}
    pending = sum(prompt.status == proactive_prompts.PENDING for prompt in view.prompts)
    table = Table(
        "priority", "prompt", "status", title=f"Proactive prompts in the next-conversation package ({pending} pending)"
    )
    for entry in view.packaged:
        state = status.get(str(entry.get("prompt_id")), "?")
        table.add_row(str(entry.get("priority")), str(entry.get("prompt_text")), state)
    console.print(table)
    if view.delivery is not None:
        how = "delivers" if view.delivery.delivered_now else "delivered already (an earlier run)"
        console.print(f'The web app {how}: "{view.delivery.prompt_text}" (status delivered, delivered_at set)')
    table = Table("community", "concepts", "description", title=f"Communities ({len(view.communities)})")
    for community in view.communities:
        table.add_row(community.name, str(len(community.core_concept_ids or [])), community.description or "")
    console.print(table)
    console.print(
        f"Derived stores: {view.graph_nodes} graph nodes, {view.vector_items} vector items "
        f"(outbox backlog {view.backlog}); 3D projection of {view.projection_nodes} nodes"
    )
    kinds = sorted(view.graph_relationships.items(), key=lambda item: (-item[1], item[0]))
    console.print("Graph relationships: " + ", ".join(f"{k} {n}" for k, n in kinds), highlight=False, soft_wrap=True)
    table = Table("score", "memory", "why", title=f'Recall: "{RECALL_QUERY}"')
    for item in view.recalled:
        table.add_row(f"{item.score:.2f}", item.title, item.why)
    console.print(table)
