"""User B can neither read nor change user A's rows through any store function outside the repositories that takes
a user id (as a parameter, or inside a cycle or an agent's result): the agents' material reads and write
transactions, the cycle, the ledger and LLM-call views, the outbox, sync, reconcile, recall and forget-user.

Both users get a row in every table and their entities in the derived stores (graph in Postgres, pgvector with the
local model); then every function is called as B, naming A's ids wherever it takes ids, and A's rows must be exactly
as they were. test_tenant_isolation.py checks that every such function has a case here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from core.corrections import CorrectionAction, CorrectionDecision
from core.cycle import Cycle
from core.errors import PermanentError
from core.ingestion import IngestionResult, IngestionStatus
from core.insight import CommunityDraft, InsightResult, InsightStatus, MergeDraft
from core.recall import RecallWeights
from core.revisions import RevisionKind, RevisionSource
from core.vocabulary import NodeLabel
from settings import Settings
from store import (
    concept_names,
    corrections_writes,
    cycle_report_writes,
    cycles,
    forget,
    ingestion_writes,
    insight_material,
    insight_writes,
    ledger,
    llm_calls,
    outbox,
    proactive_prompts_writes,
    projection_refresh,
    projection_source,
    recall,
    reconcile,
    revise,
    salience,
    sync,
)
from store.cycle_report_writes import CycleWindows, NewCycleReport
from store.graph.base import GraphStore
from store.ingestion_writes import IngestionThresholds
from store.postgres import Executor
from store.sync import Ref
from store.vector.base import VectorStore
from tests.store.derived_memory import drain, open_stores, store_settings
from tests.store.tenants import (
    A_ONLY_DIMENSION,
    A_TOKENS,
    B_TOKENS,
    A,
    B,
    Case,
    Rows,
    equals,
    give_user_a_row_everywhere,
    is_none,
    no_trace_of_a,
    row_id,
    run_cases,
    snapshot,
)

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
B_SOURCE = RevisionSource(conversation_id=row_id(B, "conv"))


@dataclass(frozen=True)
class Stores:
    graph: GraphStore
    vector: VectorStore
    query: list[float]
    """A query vector that A's memory unit answers well (its own text embedded)."""


async def b_cycle(db: Executor) -> Cycle:
    state = await cycles.read_cycle(db, B)
    assert state is not None
    return state.cycle


def a_ref(a: Rows) -> list[Ref]:
    return [Ref(NodeLabel.MEMORY_UNIT, a.memory_unit), Ref(NodeLabel.CONCEPT, a.concept)]


async def _a_concept_type(db: Executor, a: Rows) -> str:
    kind = await db.fetchval("SELECT type FROM concepts WHERE concept_id = $1", a.concept)
    assert isinstance(kind, str)
    return kind


async def _nearest_for_b(db: Executor, a: Rows, s: Stores) -> Any:
    kind = await _a_concept_type(db, a)
    return await concept_names.nearest(db, B, s.vector.model_version, [(s.query, kind)], limit=10)


async def _upsert_for_b_naming_a(db: Executor, a: Rows, s: Stores) -> None:
    name = concept_names.ConceptName(a.concept, await _a_concept_type(db, a), "Secret (person)")
    await concept_names.upsert(db, B, s.vector.model_version, [(name, s.query)])


async def b_insight_naming_a(db: Executor, a: Rows) -> Any:
    """B's insight whose artifacts, merge, growth and community name A's rows: written for B, never touching A's."""
    from core.insight import ArtifactDraft, InsightArtifactType, InsightGrowthDraft
    from core.vocabulary import EntityKind, GrowthDimension

    cycle = await b_cycle(db)
    result = InsightResult(
        user_id=B,
        cycle_start=cycle.start,
        status=InsightStatus.WRITTEN,
        memory_profile={"summary": "b"},
        knowledge_graph_schema={},
        artifacts=[
            ArtifactDraft(
                key="insight_summary",
                artifact_type=InsightArtifactType.INSIGHT_SUMMARY,
                title="t",
                narrative="n",
                memory_unit_ids=(a.memory_unit,),
                concept_ids=(a.concept,),
            )
        ],
        merges=[MergeDraft(primary_id=row_id(B, "concept"), secondary_ids=(a.concept,), reason="r")],
        growth_events=[
            InsightGrowthDraft(
                key="g",
                entity_id=a.memory_unit,
                entity_kind=EntityKind.MEMORY_UNIT,
                dim_key=GrowthDimension.ACT_SELF,
                delta=1.0,
                rationale="r",
            )
        ],
        communities=[
            CommunityDraft(
                key="community:1",
                existing_id=a.community,
                concept_ids=(a.concept, row_id(B, "concept")),
                name="x",
                description=None,
            )
        ],
        model="m",
        prompt_name="insight",
        prompt_version="v",
    )
    return await insight_writes.write_insight(db, result)


CASES: dict[str, Case] = {
    # the cycle
    "cycles.read_cycle": Case(lambda db, a, s: cycles.read_cycle(db, B), no_trace_of_a),
    "cycles.lock_current_cycle": Case(lambda db, a, s: cycles.lock_current_cycle(db, B), no_trace_of_a),
    "cycles.reset_cycle": Case(lambda db, a, s: _reset_b(db), equals(True)),
    "cycles.close_cycle": Case(lambda db, a, s: cycles.close_cycle(db, Cycle.of(B, LONG_AGO), LONG_AGO), equals(False)),
    # the agents' material and writes
    "insight_material.insight_written": Case(
        lambda db, a, s: insight_material.insight_written(db, Cycle.of(B, LONG_AGO)), equals(False)
    ),
    "insight_material.load_insight_material": Case(
        lambda db, a, s: _b_material(db),
        lambda material: no_trace_of_a(material) and bool(material.memory_units),
    ),
    "insight_material.load_concept_graph": Case(
        lambda db, a, s: insight_material.load_concept_graph(db, B), no_trace_of_a
    ),
    "insight_material.load_concepts": Case(
        lambda db, a, s: insight_material.load_concepts(db, B, [a.concept]), equals([])
    ),
    "insight_material.load_goal_beginnings": Case(
        # A's memory unit is related to A's concept: never a beginning of B's goal of that id
        lambda db, a, s: insight_material.load_goal_beginnings(db, B, [a.concept], cycle_units=(), goals=5, per_goal=5),
        equals([]),
    ),
    "insight_material.concept_names": Case(
        lambda db, a, s: insight_material.concept_names(db, B, [a.concept]), equals({})
    ),
    "insight_material.load_communities": Case(lambda db, a, s: insight_material.load_communities(db, B), no_trace_of_a),
    "insight_writes.write_insight": Case(lambda db, a, s: b_insight_naming_a(db, a), no_trace_of_a),
    "cycle_report_writes.read_cycle_rows": Case(
        lambda db, a, s: cycle_report_writes.read_cycle_rows(
            db, B, CycleWindows(previous_start=LONG_AGO, start=LONG_AGO, end=datetime.now(UTC) + timedelta(days=1))
        ),
        lambda rows: no_trace_of_a(rows) and rows.counts["memory_units"] >= 1,
    ),
    "cycle_report_writes.report_exists": Case(
        lambda db, a, s: cycle_report_writes.report_exists(db, Cycle.of(B, LONG_AGO)), equals(False)
    ),
    "cycle_report_writes.write_cycle_report": Case(
        lambda db, a, s: cycle_report_writes.write_cycle_report(
            db,
            NewCycleReport(cycle=Cycle.of(B, LONG_AGO), title="t", narrative=None, content_data={}, with_card=True),
            reset_at=None,
        ),
        lambda summary: summary.outcome == "written" and no_trace_of_a(summary),
    ),
    "proactive_prompts_writes.read_prompt_source": Case(
        lambda db, a, s: proactive_prompts_writes.read_prompt_source(db, B, insights_since=LONG_AGO, memory_limit=50),
        no_trace_of_a,
    ),
    "proactive_prompts_writes.write_prompts": Case(
        lambda db, a, s: proactive_prompts_writes.write_prompts(
            db,
            B,
            "daily:2",
            [proactive_prompts_writes.NewPrompt(prompt_text="A new question", priority=1, source_agent="a")],
            cap=10,
            expire_before=LONG_AGO,
            now=datetime.now(UTC),
            expires_at=datetime.now(UTC) + timedelta(days=1),
        ),
        lambda summary: summary.written == 1,
    ),
    "proactive_prompts_writes.packaged_prompts": Case(
        lambda db, a, s: proactive_prompts_writes.packaged_prompts(db, B, now=LONG_AGO), no_trace_of_a
    ),
    "proactive_prompts_writes.refresh_package_prompts": Case(
        lambda db, a, s: proactive_prompts_writes.refresh_package_prompts(db, B, now=LONG_AGO), is_none
    ),
    "proactive_prompts_writes.expire_prompts": Case(
        lambda db, a, s: proactive_prompts_writes.expire_prompts(db, B, created_before=LONG_AGO, now=LONG_AGO),
        equals(0),
    ),
    "projection_source.read_projection_source": Case(
        lambda db, a, s: projection_source.read_projection_source(db, B, max_memory_units=100), no_trace_of_a
    ),
    "ingestion_writes.write_ingestion": Case(
        # B's extraction of A's conversation: refused before anything is written
        lambda db, a, s: ingestion_writes.write_ingestion(
            db,
            IngestionResult(
                conversation_id=a.conversation,
                user_id=B,
                status=IngestionStatus.EXTRACTED,
                model="m",
                prompt_name="ingestion",
                prompt_version="v",
            ),
            IngestionThresholds(importance=0, card_importance=5),
            reprocess=True,
        ),
        raises=PermanentError,
    ),
    # the runtime's views of a user
    "ledger.runs_naming_user": Case(
        lambda db, a, s: ledger.runs_naming_user(db, B, ["insight"], limit=10),
        lambda runs: len(runs) == 1 and runs[0].args["user_id"] == B,
    ),
    "llm_calls.list_llm_calls": Case(
        lambda db, a, s: llm_calls.list_llm_calls(db, B),
        lambda calls: [c.call.user_id for c in calls] == [B],
    ),
    "llm_calls.tokens_used_since": Case(
        lambda db, a, s: llm_calls.tokens_used_since(db, B, LONG_AGO), equals(B_TOKENS)
    ),
    # the derived stores
    "sync.read_records": Case(
        lambda db, a, s: sync.read_records(db, B, NodeLabel.MEMORY_UNIT, [a.memory_unit]), equals({})
    ),
    "sync.outgoing_edges": Case(lambda db, a, s: _b_outgoing_edges(db), no_trace_of_a),
    "sync.user_refs": Case(lambda db, a, s: sync.user_refs(db, B), no_trace_of_a),
    "sync.graph_batch": Case(
        # B asking for A's entities: nothing to upsert (B has no such rows), only B's own node keys to delete
        lambda db, a, s: sync.graph_batch(db, s.graph, B, a_ref(a)),
        lambda batch: batch.upsert_nodes == () and batch.upsert_edges == () and batch.delete_edges == (),
    ),
    "sync.vector_changes": Case(
        lambda db, a, s: sync.vector_changes(db, B, a_ref(a)), lambda changes: changes.upserts == []
    ),
    "concept_names.stored_texts": Case(
        lambda db, a, s: concept_names.stored_texts(db, B, s.vector.model_version, [a.concept]), equals({})
    ),
    "concept_names.nearest": Case(
        # B's nearest names to the vector of A's own memory, of A's concept's type: only B's concepts, if any
        lambda db, a, s: _nearest_for_b(db, a, s),
        no_trace_of_a,
    ),
    "concept_names.delete": Case(lambda db, a, s: concept_names.delete(db, B, [a.concept]), equals(None)),
    "concept_names.upsert": Case(
        # B's row naming A's concept id is B's own row: A's vector stays as it was
        lambda db, a, s: _upsert_for_b_naming_a(db, a, s),
        equals(None),
    ),
    # salience and the projection's refresh requests
    "salience.compute_salience": Case(
        lambda db, a, s: salience.compute_salience(db, B, [a.concept], now=datetime.now(UTC)), equals({})
    ),
    "salience.refresh_salience": Case(lambda db, a, s: salience.refresh_salience(db, B, [a.concept]), equals([])),
    "projection_refresh.get_state": Case(
        lambda db, a, s: projection_refresh.get_state(db, B), lambda state: state is not None and state.user_id == B
    ),
    "projection_refresh.refreshed": Case(
        lambda db, a, s: projection_refresh.refreshed(db, B, started=datetime.now(UTC)), equals(False)
    ),
    "projection_refresh.died": Case(lambda db, a, s: projection_refresh.died(db, B, "boom"), equals(None)),
    "reconcile.expected_graph": Case(lambda db, a, s: reconcile.expected_graph(db, B), no_trace_of_a),
    "reconcile.expected_vectors": Case(lambda db, a, s: reconcile.expected_vectors(db, B), no_trace_of_a),
    "reconcile.graph_drift": Case(lambda db, a, s: reconcile.graph_drift(db, s.graph, B), no_trace_of_a),
    "reconcile.vector_drift": Case(
        lambda db, a, s: reconcile.vector_drift(db, s.vector, B, s.vector.model_version), no_trace_of_a
    ),
    "reconcile.pending_refs": Case(lambda db, a, s: reconcile.pending_refs(db, B, "graph"), no_trace_of_a),
    "reconcile.store_refs": Case(lambda db, a, s: reconcile.store_refs(db, B, "vector"), no_trace_of_a),
    "reconcile.stale_vector_refs": Case(
        lambda db, a, s: reconcile.stale_vector_refs(s.vector, B, "another-model"),
        lambda refs: bool(refs) and no_trace_of_a(refs),
    ),
    "reconcile.user_exists": Case(lambda db, a, s: reconcile.user_exists(db, B), equals(True)),
    "outbox.pending": Case(
        lambda db, a, s: outbox.pending(db, "vector", B, NodeLabel.MEMORY_UNIT, [a.memory_unit]), equals(set())
    ),
    "revise.revised_by_others": Case(
        # A's unit has A's revision from A's conversation: B never sees it
        lambda db, a, s: revise.revised_by_others(db, B, [a.memory_unit], B_SOURCE),
        equals(set()),
    ),
    "revise.revise_units": Case(
        lambda db, a, s: revise.revise_units(
            db,
            B,
            [revise.UnitChange(a.memory_unit, RevisionKind.CORRECTED, B_SOURCE, lambda state: state)],
            card_importance=0,
        ),
        lambda done: done.missing == {row_id(A, "mu")} and not (done.memory_units or done.revisions),
    ),
    "revise.revise_descriptions": Case(
        lambda db, a, s: revise.revise_descriptions(
            db, B, [revise.DescriptionChange(a.concept, "overwritten?", RevisionKind.CORRECTED, B_SOURCE)]
        ),
        lambda done: not (done.concepts or done.revisions),
    ),
    "revise.undo_conversation": Case(
        lambda db, a, s: revise.undo_conversation(db, B, a.conversation),
        lambda undone: not (undone.held or undone.changed.revisions or undone.changed.memory_units),
    ),
    "revise.as_first_seen": Case(
        # A's unit and concept, handed in with A's conversation: A's revision of them is never read for B
        lambda db, a, s: _first_seen_for_b(db, a),
        lambda seen: seen == "unchanged",
    ),
    "revise.forget_units": Case(
        lambda db, a, s: revise.forget_units(db, B, B_SOURCE, [a.memory_unit]),
        lambda done: done.missing == {row_id(A, "mu")} and not (done.memory_units or done.revisions),
    ),
    "corrections_writes.read_targets": Case(
        # A's correction handed in as B's: its target (A's unit) is no target of B's
        lambda db, a, s: _targets_for_b(db, a),
        lambda targets: (
            targets.of == {row_id(A, "correction"): None} and not (targets.memory_units or targets.concepts)
        ),
    ),
    "corrections_writes.write_corrections": Case(
        # decisions naming A's interaction and A's unit: nothing of A's is applied or settled
        lambda db, a, s: corrections_writes.write_corrections(
            db,
            B,
            [a.correction],
            [
                CorrectionDecision(
                    a.correction, CorrectionAction.REVISE_MEMORY, "x", target_id=a.memory_unit, content="overwritten?"
                ),
            ],
            card_importance=0,
        ),
        lambda summary: summary.as_dict() == {"applied": 0, "ignored": 0, "failed": 0, "revisions": 0},
    ),
    "recall.recall": Case(
        lambda db, a, s: recall.recall(
            db, s.vector, B, [recall.Query("q", s.query)], weights=RecallWeights(), graph=s.graph, limit=10
        ),
        lambda found: bool(found) and no_trace_of_a(found),
    ),
    # B's own rows naming A's ids (after the reads above, which would see them): never a way to A's
    "outbox.record_changes": Case(
        # a row of B's naming A's id: the dispatcher reads B's rows for it (none), never A's
        lambda db, a, s: outbox.record_changes(db, B, [outbox.Change(NodeLabel.MEMORY_UNIT, a.memory_unit)]),
        equals(2),
    ),
    "salience.refresh_and_record": Case(
        # B's outbox row naming A's concept, and no salience of A's computed or set
        lambda db, a, s: salience.refresh_and_record(db, B, [outbox.Change(NodeLabel.CONCEPT, a.concept)]),
        equals(None),
    ),
    "reconcile.record_refs": Case(lambda db, a, s: reconcile.record_refs(db, B, "graph", a_ref(a)), equals(2)),
    # forget-user, last: it erases B (and only B)
    "forget.conversation_ids": Case(lambda db, a, s: forget.conversation_ids(db, B), equals([row_id(B, "conv")])),
    "forget.count_graph": Case(lambda db, a, s: forget.count_graph(s.graph, B), lambda n: n["nodes"] > 0),
    "forget.count_vector": Case(lambda db, a, s: forget.count_vector(s.vector, B), lambda n: sum(n.values()) > 0),
    "forget.count_postgres": Case(
        lambda db, a, s: forget.count_postgres(db, B, [row_id(B, "conv")]), lambda n: n["public.users"] == 1
    ),
    "forget.delete_postgres": Case(
        lambda db, a, s: forget.delete_postgres(
            db, B, [row_id(B, "conv"), a.conversation]
        ),  # A's conversation named too
        lambda tombstones: tombstones > 0,
    ),
    "forget.drop_tombstones": Case(lambda db, a, s: forget.drop_tombstones(db, B), lambda n: n > 0),
    "outbox.delete_user_rows": Case(
        lambda db, a, s: outbox.delete_user_rows(db, B), equals(0)
    ),  # dropped by forget above
}


async def _first_seen_for_b(db: Executor, a: Rows) -> str:
    from store.repos import memory_units

    [unit] = await memory_units.list_memory_units(db, A)
    concepts, units = await revise.as_first_seen(db, B, a.conversation, [], [unit])
    return "unchanged" if units == [unit] and concepts == [] else f"changed: {units}"


async def _targets_for_b(db: Executor, a: Rows) -> Any:
    from store.repos.consumed_interactions import InteractionRecord

    row = await db.fetchrow("SELECT * FROM interaction_logs WHERE interaction_id = $1", a.correction)
    return await corrections_writes.read_targets(db, B, [InteractionRecord.from_row(row)])


async def _reset_b(db: Executor) -> bool:
    assert isinstance(db, asyncpg.Pool)
    async with db.acquire() as conn, conn.transaction():
        return await cycles.reset_cycle(conn, await b_cycle(conn), datetime.now(UTC))


async def _b_material(db: Executor) -> Any:
    return await insight_material.load_insight_material(
        db, await b_cycle(db), window_start=LONG_AGO, window_end=datetime.now(UTC), importance_threshold=0
    )


async def _b_outgoing_edges(db: Executor) -> Any:
    nodes = {label: await sync.read_records(db, B, label, None) for label in NodeLabel}
    return await sync.outgoing_edges(db, B, nodes)


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return store_settings(database_url, redis_url, tmp_path)


async def test_user_b_can_neither_read_nor_change_user_a_rows_through_the_store(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings
) -> None:
    a_rows = await give_user_a_row_everywhere(pool, A, A_ONLY_DIMENSION, A_TOKENS)
    await give_user_a_row_everywhere(pool, B, "know_self", B_TOKENS)
    async with open_stores(settings, pool, redis_client) as session:
        await drain(session)  # both users' entities in the graph and vector stores
        graph, vector = await session.graph(), await session.vector(embedding=True)
        [query] = await _embed(session, "secret")
        before = await snapshot(pool, A)
        assert before["runtime.graph_nodes"] and before["runtime.vector_items"]

        failures = await run_cases(CASES, pool, a_rows, Stores(graph, vector, query))

    assert failures == [], "\n".join(failures)
    assert await snapshot(pool, A) == before, "a call with B's user id changed one of A's rows"


async def _embed(session: Any, text: str) -> list[list[float]]:
    from agents.llm import CallContext
    from jobs.resources import EMBEDDER

    embedder = await session.resources.get(EMBEDDER)
    vectors: list[list[float]] = await embedder.embed([text], context=CallContext(user_id=B, agent="test"))
    return vectors
