"""One definition of "this cycle" (core/cycle.CycleWindow) in every reader: a memory of last year told in this cycle
belongs to it, one told before it does not, whatever dates the events have, and a conversation belongs to the cycle
its memory was learned in, whatever its start_time. Insight's material, the report's counts and rows, and the
memories the proactive prompts see agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from core.cycle import Cycle, CycleWindow
from core.vocabulary import StructuralRelationshipType
from jobs.cycle_report import report_windows
from store.cycle_report_writes import read_cycle_rows
from store.graph.postgres import PostgresGraphStore
from store.insight_material import load_insight_material
from store.proactive_prompts_writes import read_prompt_source
from store.repos._base import to_db
from store.sync import graph_batch, user_refs
from tests.jobs.cycle_seed import SeededUser, seed_user

YEAR = timedelta(days=365)


async def told_this_cycle_about_last_year(pool: asyncpg.Pool) -> tuple[SeededUser, str, str]:
    """A user three days into a cycle with two memory units of one conversation that started before the cycle: the
    first tells of last year and was learned an hour ago, the second tells of yesterday and was learned before the
    cycle began (a conversation ingested late in the previous cycle)."""
    user = await seed_user(pool, cycle_age=timedelta(days=3), memories=2, activity_age=timedelta(hours=1))
    last_year, before_cycle = user.memory_ids
    now = datetime.now(UTC)
    await pool.execute("UPDATE memory_units SET creation_ts = $2 WHERE muid = $1", last_year, to_db(now - YEAR))
    await pool.execute(
        "UPDATE memory_units SET creation_ts = $2, ingestion_ts = $3 WHERE muid = $1",
        before_cycle,
        to_db(now - timedelta(days=1)),
        to_db(user.cycle_start - timedelta(hours=1)),
    )
    await pool.execute(
        "UPDATE conversations SET start_time = $2 WHERE user_id = $1", user.user_id, to_db(user.cycle_start - YEAR)
    )
    return user, last_year, before_cycle


async def test_insight_sees_what_the_cycle_learned_not_what_happened_in_it(pool: asyncpg.Pool) -> None:
    user, last_year, _ = await told_this_cycle_about_last_year(pool)
    cycle = Cycle.of(user.user_id, user.cycle_start)
    window = CycleWindow.of(cycle, datetime.now(UTC))
    material = await load_insight_material(
        pool, cycle, window_start=window.start, window_end=window.end, importance_threshold=0
    )
    assert [m.muid for m in material.memory_units] == [last_year]
    assert material.active_conversations == 1  # it started a year ago; its memory was learned in this cycle


async def test_the_report_counts_what_the_cycle_learned_conversations_by_their_memory(pool: asyncpg.Pool) -> None:
    user, last_year, _ = await told_this_cycle_about_last_year(pool)
    cycle = Cycle.of(user.user_id, user.cycle_start)
    windows, current = report_windows(cycle, cycle, datetime.now(UTC))
    rows = await read_cycle_rows(pool, user.user_id, windows)
    assert current and (rows.counts["conversations"], rows.counts["memory_units"]) == (1, 1)
    assert [h["muid"] for h in rows.highlights] == [last_year]


async def test_proactive_prompts_see_the_memory_told_last_first(pool: asyncpg.Pool) -> None:
    user, last_year, _ = await told_this_cycle_about_last_year(pool)
    source = await read_prompt_source(pool, user.user_id, insights_since=user.cycle_start, memory_limit=1)
    assert source is not None and [m["muid"] for m in source.memories] == [last_year]


async def test_the_reports_top_concepts_count_memory_units_whatever_the_graph_holds(pool: asyncpg.Pool) -> None:
    """Three memory units about one concept are three mentions, with the embedded graph's own rows (MENTIONS) beside
    the extracted ones in runtime.knowledge_edges and a second relationship from one unit to the concept."""
    user = await seed_user(pool, cycle_age=timedelta(days=7), memories=3, concepts=2)
    concept = user.concept_ids[0]
    await pool.execute(
        "INSERT INTO runtime.knowledge_edges (edge_id, user_id, source_id, source_type, target_id, target_type, "
        "relationship_type, strength) VALUES (gen_random_uuid()::text, $1, $2, 'MemoryUnit', $3, 'Concept', "
        "'INSPIRES', 0.5)",
        user.user_id,
        user.memory_ids[0],
        concept,
    )
    graph = PostgresGraphStore(pool)
    await graph.apply(user.user_id, await graph_batch(pool, graph, user.user_id, await user_refs(pool, user.user_id)))
    assert (await graph.counts(user.user_id)).edges[StructuralRelationshipType.MENTIONS] == 3
    cycle = Cycle.of(user.user_id, user.cycle_start)
    windows, _ = report_windows(cycle, cycle, datetime.now(UTC))
    rows = await read_cycle_rows(pool, user.user_id, windows)
    assert [(c["concept_id"], c["mentions"]) for c in rows.top_concepts] == [(concept, 3)]
