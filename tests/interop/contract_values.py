"""Every value a database holds that the web app reads, checked against docs/contract.md's sources (clients/contract.py
and the vocabularies of core/ it imports, from which the page is generated): what a Prisma client reading the
database would find undocumented. Used on the demo's database (tests/test_demo.py) and by test_contract.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from clients.contract import (
    CARD_TYPES,
    PROMPT_STATUS_OWNERS,
    STATUS_OWNERS,
    GrowthEventDetails,
    MemoryProfile,
    MemoryUnitMetadata,
    NextConversationContextPackage,
)
from core.insight import InsightArtifactType
from core.media import MediaKind, MediaStatus
from core.vocabulary import GROWTH_SOURCES, AgentName, ArtifactType, EntityKind, GrowthDimension

VALUES: dict[str, set[str]] = {
    "conversations.status": set(STATUS_OWNERS),
    "media_items.type": {kind.value for kind in MediaKind},
    "media_items.processing_status": {status.value for status in MediaStatus},
    "cards.card_type": set(CARD_TYPES),
    "derived_artifacts.artifact_type": {kind.value for kind in ArtifactType},
    "derived_artifacts.generated_by_agent": {agent.value for agent in AgentName},
    "growth_events.source": {source.value for source in GROWTH_SOURCES},
    "growth_events.entity_type": {kind.value for kind in EntityKind},
    "growth_events.dim_key": {dim.value for dim in GrowthDimension},
    "proactive_prompts.status": {str(status) for status in PROMPT_STATUS_OWNERS},
    "proactive_prompts.source_agent": {agent.value for agent in AgentName},
}
"""table.column → the values the contract allows."""


async def undocumented_values(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """One line per stored value or JSON object the contract does not allow (empty: the database keeps it)."""
    problems: list[str] = []
    for column, allowed in VALUES.items():
        table, name = column.split(".")
        for row in await conn.fetch(f"SELECT DISTINCT {name} AS value FROM {table} WHERE {name} IS NOT NULL"):
            if row["value"] not in allowed:
                problems.append(f"{column} = {row['value']!r}")
    for row in await conn.fetch("SELECT card_type, source_entity_type, display_data FROM cards"):
        kind, shape = CARD_TYPES.get(row["card_type"], (None, None))
        if shape is not None:
            if row["source_entity_type"] != kind:
                problems.append(f"cards of {row['card_type']}: source_entity_type {row['source_entity_type']!r}")
            problems += _invalid(shape, [row["display_data"]], f"cards.display_data of {row['card_type']}")
    kinds = {kind.value for kind in InsightArtifactType}
    for row in await conn.fetch(
        "SELECT DISTINCT content_data->>'insight_kind' AS kind FROM derived_artifacts WHERE generated_by_agent = $1",
        AgentName.INSIGHT.value,
    ):
        if row["kind"] not in kinds:
            problems.append(f"derived_artifacts.content_data.insight_kind = {row['kind']!r}")
    shapes: list[tuple[type[BaseModel], str, Callable[[asyncpg.Record], Any]]] = [
        (GrowthEventDetails, "SELECT details FROM growth_events", lambda r: r["details"]),
        (MemoryUnitMetadata, "SELECT metadata FROM memory_units", lambda r: r["metadata"]),
        (MemoryProfile, "SELECT memory_profile FROM users WHERE memory_profile IS NOT NULL", lambda r: r[0]),
        (
            NextConversationContextPackage,
            "SELECT next_conversation_context_package FROM users WHERE next_conversation_context_package IS NOT NULL",
            lambda r: r[0],
        ),
    ]
    for shape, query, value in shapes:
        problems += _invalid(shape, [value(row) for row in await conn.fetch(query)], shape.__name__)
    return problems


def _invalid(shape: type[BaseModel], values: Iterable[Any], what: str) -> list[str]:
    problems = []
    for value in values:
        try:
            shape.model_validate(json.loads(value) if isinstance(value, str) else value)  # a connection without codecs
        except ValidationError as exc:
            problems.append(f"{what}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}")
    return problems
