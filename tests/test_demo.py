"""`run.py demo` as the README runs it: seed, sweep, ingest and a growth cycle through real worker subprocesses, the
summary; idempotent on rerun."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from tests.cli.runner import invocation_here, run_cli
from tests.interop.contract_values import undocumented_values


async def test_demo_ingests_the_sample_user_and_a_rerun_changes_nothing(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ORRERY_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    first = run_cli("demo", env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "scripted sample answers" in first.stdout  # labelled: no model produced this
    # the English-speaking sample user's 8 and the Portuguese-speaking one's 3 (one with a photo)
    assert "1 silent conversation(s) ended; 11 ingestion job(s) queued" in first.stdout, first.stdout
    assert "ingested 11 conversation(s)" in first.stdout
    assert "Memory units (15)" in first.stdout and "Next conversation opens with" in first.stdout
    # issue 19: a later conversation retells a memory and changes a fact (no new unit), the user corrects one and
    # adds a reflection in the web app (one LLM call for both)
    assert "ingested 1 later conversation(s): memory revised" in first.stdout
    assert "2 correction(s) and reflection(s) from the web app applied in one LLM call" in first.stdout
    history = first.stdout.split("Memory history (", 1)[1]
    for kind, about in (
        ("retold", "Ran 10k without stopping"),
        ("updated", "Shins healed: four runs a week"),
        ("corrected", "Talk with Lena about caring for Dad"),
        ("added", "Lena and Maya are a team"),
    ):
        assert re.search(rf"{kind}\s.*{re.escape(about)}", history), history
    # Maya's 8 ingestions and the later one, her attachments read by a model, the corrections, and the growth
    # cycle's insight, proactive prompts and cycle report one call each; stores synced
    assert re.findall(r"LLM: \d+ calls", first.stdout) == ["LLM: 14 calls"] and "Cycle report:" in first.stdout
    assert "Proactive prompts in the next-conversation package (" in first.stdout and "Communities (" in first.stdout
    # seed V9.1's goal achievement story: Maya reached her goal of talking with her neighbours in Portuguese
    assert "Goal reached: Talking with your neighbours in Portuguese" in first.stdout
    assert "The web app delivers: " in first.stdout  # the package's first prompt, claimed as the contract says
    assert "(outbox backlog 0)" in first.stdout and "3D projection of 0 nodes" not in first.stdout
    assert "Recall:" in first.stdout and "similar to the query" in first.stdout
    # the graph: ingestion's IS_ABOUT, and the HIGHLIGHTS that follow from the insights' and the report's rows
    relationships = dict(re.findall(r"(\w+) (\d+)", first.stdout.split("Graph relationships: ")[1].splitlines()[0]))
    assert int(relationships["IS_ABOUT"]) > 0 and int(relationships["HIGHLIGHTS"]) > 0, relationships
    # the second sample user reads Portuguese: her report is written in it (the scripted answer chosen by her language)
    assert "Cycle report of ines.amostra@orrery.dev (pt-PT): Uma semana entre o barro e o Porto" in first.stdout
    # the user's id, which the closing hints use, and hints that run from a fresh clone (issue 21, item 6); no
    # LLM is configured, so a worker started by hand must ask for the scripted one by name
    user_id = await _sample_user_id(database_url)
    assert f"id {user_id}:" in first.stdout
    assert f"run.py trigger insight --arg user_id={user_id} --wait" in first.stdout
    assert f"ORRERY_LLM=scripted {invocation_here()} worker" in first.stdout

    conn = await asyncpg.connect(database_url)
    try:
        assert await undocumented_values(conn) == []  # every value the web app reads is one the contract lists
        before = await conn.fetchval("SELECT count(*) FROM memory_units")
        second = run_cli("demo", env=env, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "nothing to ingest" in second.stdout and "LLM: 14 calls" in second.stdout
        assert "later conversation" not in second.stdout and "from the web app" not in second.stdout
        assert "growth cycle: already reported" in second.stdout
        assert "The web app delivered already (an earlier run): " in second.stdout
        delivered = await conn.fetch("SELECT delivered_at FROM proactive_prompts WHERE status = 'delivered'")
        assert len(delivered) == 1 and delivered[0]["delivered_at"] is not None
        assert await conn.fetchval("SELECT count(*) FROM memory_units") == before == 15 + 5
        assert await conn.fetchval("SELECT count(*) FROM memory_revisions") == 5
        unfinished = await conn.fetch(
            "SELECT job_id, state, attempt, error_class, error FROM runtime.job_runs WHERE state <> 'succeeded'"
        )
        assert [dict(r) for r in unfinished] == [], second.stdout
    finally:
        await conn.close()


async def _sample_user_id(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        user_id: str = await conn.fetchval("SELECT user_id FROM users WHERE email = 'maya.sample@orrery.dev'")
        return user_id
    finally:
        await conn.close()
