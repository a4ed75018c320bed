"""The end of a cycle through a real worker: proactive_prompts → cycle_report → projection (and the stores' sync),
with the scripted LLM answering from agents/samples/. The report's numbers, its card, the reset, the projection, a
rerun that changes nothing, and an empty cycle that makes no call and still advances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import load_all_sample_answers, load_sample_answers
from core.cycle import Cycle
from jobs.cycle_report import CYCLE_REPORT
from jobs.proactive_prompts import PROACTIVE_PROMPTS
from jobs.runtime.enqueue import enqueue
from store import ledger
from store.cycle_report_writes import report_id
from store.llm_calls import list_llm_calls
from store.repos import cards, derived_artifacts, proactive_prompts, users
from tests.jobs.conftest import BurstRunner
from tests.jobs.cycle_seed import seed_user
from tests.jobs.test_projection_job import sync_vectors
from tests.store import testrows

REPORT_SAMPLE: dict[str, Any] = load_sample_answers("cycle_report")[0].answer
DAY = timedelta(days=1)


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers())


async def cycle_rows(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    """Everything the chain writes for a user, by id: what a rerun must leave exactly as it was."""
    return {
        "artifacts": sorted(a.artifact_id for a in await derived_artifacts.list_derived_artifacts(pool, user_id)),
        "cards": sorted(c.card_id for c in await cards.list_cards(pool, user_id)),
        "prompts": sorted(p.prompt_id for p in await proactive_prompts.list_proactive_prompts(pool, user_id)),
        "projections": sorted(p.projection_id for p in await testrows.list_graph_projections(pool, user_id)),
        "llm_calls": len([c for c in await list_llm_calls(pool, user_id) if c.call.prompt_name != "embeddings"]),
    }


async def test_the_chain_reports_the_cycle_once_resets_it_and_projects(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    growth = (
        ("act_self", 0.5, 2 * DAY),  # this cycle
        ("act_self", 0.25, 3 * DAY),  # this cycle
        ("act_self", 0.25, 9 * DAY),  # the previous cycle (the same length just before)
        ("know_self", -0.25, 10 * DAY),  # the previous cycle only
        ("show_world", 0.5, 20 * DAY),  # before both: not counted
    )
    user = await seed_user(pool, cycle_age=7 * DAY, memories=3, concepts=2, growth=growth, community=True)
    await sync_vectors(redis_client, pool, run_burst, user.user_id)  # as the ingestions would have left them
    start = user.cycle_start
    cycle = Cycle.of(user.user_id, start)
    prompts_job = cycle.job_id("proactive_prompts")
    await enqueue(
        redis_client, pool, PROACTIVE_PROMPTS, {"user_id": user.user_id, "cycle_start": start}, job_id=prompts_job
    )
    await run_burst()

    for job in ("proactive_prompts", "cycle_report", "projection"):
        run = await ledger.latest_run(pool, cycle.job_id(job))
        assert run is not None and run.state == "succeeded", (job, run)
    report = await testrows.get_derived_artifact(pool, user.user_id, report_id(cycle))
    assert report is not None and report.artifact_type == "cycle_report"
    assert (report.title, report.content_narrative) == (REPORT_SAMPLE["title"], REPORT_SAMPLE["narrative"])
    assert report.generated_by_agent == "CycleReportAgent"
    data = report.content_data or {}
    assert data["growth"]["act_self"] == {"this_cycle": 0.75, "previous_cycle": 0.25, "change": 0.5, "events": 2}
    assert data["growth"]["know_self"] == {"this_cycle": 0.0, "previous_cycle": -0.25, "change": 0.25, "events": 0}
    assert data["growth"]["show_world"] == {"this_cycle": 0.0, "previous_cycle": 0.0, "change": 0.0, "events": 0}
    assert len(data["growth"]) == 6
    assert [c["concept_id"] for c in data["top_concepts"]] == [user.concept_ids[0]]
    assert data["top_concepts"][0]["mentions"] == 3
    assert [h["memory_unit_id"] for h in data["memory_highlights"]] == user.memory_ids  # importance 8, 7, 6
    assert data["counts"] == {
        "conversations": 1,
        "memory_units": 3,
        "concepts_created": 2,
        "growth_events": 2,
        "insights": 0,
        "prompts": 2,
    }
    assert data["empty"] is False
    report_cards = [c for c in await cards.list_cards(pool, user.user_id) if c.source_entity_id == report_id(cycle)]
    assert [(c.card_type, c.source_entity_type) for c in report_cards] == [("cycle_report", "DerivedArtifact")]

    after = await users.get_user(pool, user.user_id)
    assert after is not None and after.concepts_created_in_cycle == 0
    assert after.last_cycle_started_at is not None
    assert abs(after.last_cycle_started_at - datetime.now(UTC)) < timedelta(minutes=1)
    # the chain's step projected the cycle; the newest projection (the refresh after the report's vector was stored,
    # for the cycle that now runs) places every kind of node
    projections = await testrows.list_graph_projections(pool, user.user_id)
    assert start.isoformat() in {p.projection_data["cycle_start"] for p in projections}
    types = sorted({node["type"] for node in projections[0].projection_data["nodes"]})
    assert types == ["Community", "Concept", "DerivedArtifact", "MemoryUnit"]
    calls = await list_llm_calls(pool, user.user_id)
    assert sorted(c.call.prompt_name for c in calls if c.call.prompt_name != "embeddings") == [
        "cycle_report",
        "proactive_prompts",
    ]

    # the same steps again (a duplicate enqueue or a manual trigger for the closed cycle): nothing new, no LLM call,
    # and a rerun does not run the steps after it twice (they succeeded)
    before = await cycle_rows(pool, user.user_id)
    args = {"user_id": user.user_id, "cycle_start": start}
    for spec in (PROACTIVE_PROMPTS, CYCLE_REPORT):
        await enqueue(redis_client, pool, spec, args)
        await run_burst()
        (rerun, first) = await ledger.runs_of(pool, cycle.job_id(spec.name), limit=2)
        assert rerun.result is not None and rerun.result["outcome"] == "already_written", spec.name
        assert rerun.result["next_job_id"] is None and first.result is not None
    assert await cycle_rows(pool, user.user_id) == before
    assert len(await ledger.runs_of(pool, cycle.job_id("projection"))) == 1
    again = await users.get_user(pool, user.user_id)
    assert again is not None and again.last_cycle_started_at == after.last_cycle_started_at


async def test_an_empty_cycle_makes_no_llm_call_writes_a_minimal_report_and_still_advances(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner
) -> None:
    user = await seed_user(pool, cycle_age=8 * DAY, memories=0, concepts=0, activity_age=30 * DAY)
    await enqueue(redis_client, pool, CYCLE_REPORT, {"user_id": user.user_id})  # by hand: the current cycle
    await run_burst()

    report = await testrows.get_derived_artifact(
        pool, user.user_id, report_id(Cycle.of(user.user_id, user.cycle_start))
    )
    assert report is not None and report.title == "A quiet cycle" and report.content_narrative is None
    assert (report.content_data or {})["empty"] is True
    assert await cards.list_cards(pool, user.user_id) == []
    assert await list_llm_calls(pool, user.user_id) == []
    after = await users.get_user(pool, user.user_id)
    assert after is not None and after.last_cycle_started_at is not None
    assert after.last_cycle_started_at > user.cycle_start + 7 * DAY
    projection = await ledger.latest_run(pool, Cycle.of(user.user_id, user.cycle_start).job_id("projection"))
    assert projection is not None and projection.state == "succeeded"
