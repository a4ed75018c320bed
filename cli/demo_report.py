"""What the demo shows once ingestion has run: one user's memory, read back through store/ and drawn with rich."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from core.vocabulary import GrowthDimension
from store.llm_calls import list_llm_calls
from store.postgres import Executor
from store.repos import (
    cards,
    concepts,
    conversations,
    growth_events,
    media_items,
    memory_revisions,
    memory_units,
    users,
)
from store.repos.concepts import ConceptRecord
from store.repos.conversations import ConversationRecord
from store.repos.media_items import MediaItemRecord
from store.repos.memory_revisions import MemoryRevisionRecord
from store.repos.memory_units import MemoryUnitRecord


@dataclass
class MemoryReport:
    user_name: str
    conversations: list[ConversationRecord]
    memory_units: list[MemoryUnitRecord]
    concepts: list[ConceptRecord]
    growth: dict[str, float]
    cards: int
    next_context: Any
    llm_calls: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    attachments: list[MediaItemRecord]
    revisions: list[MemoryRevisionRecord]


async def load_report(db: Executor, user_id: str) -> MemoryReport:
    user = await users.get_user(db, user_id)
    calls = await list_llm_calls(db, user_id)
    return MemoryReport(
        user_name=(user.name or user.email) if user else user_id,
        conversations=await conversations.list_conversations(db, user_id),
        memory_units=await memory_units.list_memory_units(db, user_id),
        concepts=await concepts.list_concepts(db, user_id),
        growth=await growth_events.growth_by_dimension(db, user_id),
        cards=len(await cards.list_cards(db, user_id)),
        next_context=user.next_conversation_context_package if user else None,
        llm_calls=len(calls),
        prompt_tokens=sum(c.call.prompt_tokens for c in calls),
        cached_tokens=sum(c.call.cached_tokens for c in calls),
        completion_tokens=sum(c.call.completion_tokens for c in calls),
        attachments=await media_items.list_media_items(db, user_id),
        revisions=await memory_revisions.list_revisions(db, user_id),
    )


def _clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_report(console: Console, report: MemoryReport) -> None:
    table = Table(title=f"Conversations of {report.user_name}")
    for column in ("title", "status", "importance"):
        table.add_column(column)
    for conversation in sorted(report.conversations, key=lambda c: c.start_time):
        importance = "" if conversation.importance_score is None else f"{conversation.importance_score:g}"
        table.add_row(_clip(conversation.title or "(untitled)", 60), conversation.status, importance)
    console.print(table)

    table = Table(title=f"Memory units ({len(report.memory_units)})")
    for column in ("when", "title", "importance", "sentiment"):
        table.add_column(column)
    for unit in sorted(report.memory_units, key=lambda u: u.creation_ts):
        table.add_row(
            unit.creation_ts.strftime("%Y-%m-%d"),
            _clip(unit.title, 60),
            f"{unit.importance_score or 0:g}",
            f"{unit.sentiment_score or 0:+.1f}",
        )
    console.print(table)

    if report.attachments:
        titles = {unit.muid: unit.title for unit in report.memory_units}
        table = Table(title=f"Attachments ({len(report.attachments)}): what was read, and the memory it gave")
        for column in ("file", "type", "status", "read from it", "memory unit"):
            table.add_column(column)
        for item in report.attachments:
            reading = item.reading
            read = reading.text if reading is not None else item.failure_reason or "(not read yet)"
            table.add_row(
                _clip(item.filename or item.media_id, 30),
                item.type,
                item.processing_status,
                _clip(read, 90),
                _clip(titles.get(item.memory_unit_id or "", ""), 40),
            )
        console.print(table)

    table = Table(title=f"Concepts ({len(report.concepts)})")
    for column in ("name", "type", "description"):
        table.add_column(column)
    for concept in sorted(report.concepts, key=lambda c: (c.type, c.name)):
        table.add_row(concept.name, concept.type, _clip(concept.description, 70))
    console.print(table)

    table = Table(title="Growth by dimension (sum of deltas)")
    table.add_column("dimension")
    table.add_column("growth", justify="right")
    for dimension in GrowthDimension:
        table.add_row(dimension.value, f"{report.growth.get(dimension.value, 0.0):+.2f}")
    console.print(table)
    console.print(f"Cards on the canvas: {report.cards}")
    render_history(console, report)

    package: dict[str, Any] = report.next_context if isinstance(report.next_context, dict) else {}
    raw_topics = package.get("unresolved_topics")
    topics: list[Any] = raw_topics if isinstance(raw_topics, list) else []
    lines = [f"[bold]{package.get('proactive_greeting', '(none yet)')}[/]"]
    if package.get("suggested_focus"):
        lines.append(f"focus: {package['suggested_focus']}")
    lines += [f"• {t.get('topic')}: {t.get('suggested_question')}" for t in topics if isinstance(t, dict)]
    console.print(Panel("\n".join(lines), title="Next conversation opens with"))
    console.print(
        f"LLM: {report.llm_calls} calls, {report.prompt_tokens} prompt ({report.cached_tokens} cached) + "
        f"{report.completion_tokens} completion tokens"
    )


def render_history(console: Console, report: MemoryReport) -> None:
    """How the memory changed: each revision, oldest first, with what it is about and why (`run.py memory history`
    shows the values)."""
    names = {u.muid: u.title for u in report.memory_units} | {c.concept_id: c.name for c in report.concepts}
    titles = {c.id: c.title or "(untitled)" for c in report.conversations}
    table = Table(title=f"Memory history ({len(report.revisions)} revisions)")
    for column in ("kind", "of", "now", "why"):
        table.add_column(column)
    for revision in sorted(report.revisions, key=lambda r: (r.created_at, r.revision_id)):
        if revision.source_conversation_id is not None:
            why = f"conversation: {_clip(titles.get(revision.source_conversation_id), 40)}"
        else:
            why = "the user, in the app"
        table.add_row(revision.kind, revision.entity_type, _clip(names.get(revision.entity_id, "(gone)"), 50), why)
    console.print(table)
