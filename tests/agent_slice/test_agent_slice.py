"""A new agent adds files, not edits: the slice in this directory (agent, prompt, samples, writes, job) runs through
a real burst worker, the LLM resource of jobs/resources.py, and the demo's scripted LLM answering by prompt name; its
write goes through the store (a repository, in one transaction) and the outbox, and the derived stores follow.

Nothing of the slice is in prompts/, agents/samples/ or jobs/catalog.py: the test adds this directory for prompts
and samples, and runs the catalog's jobs plus this one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import extra_sample_dir, load_sample_answers
from jobs.catalog import JOBS
from jobs.runtime.enqueue import enqueue
from jobs.runtime.keys import QUEUES
from prompts import PROMPTS_DIR, extra_prompt_dir, load_prompt
from settings import Settings, load_settings
from store import ledger
from store.repos import users
from tests.agent_slice.agent import AGENT_NAME, PROMPT_NAME
from tests.agent_slice.job import SLICE_NOTE, dead_key
from tests.agent_slice.writes import note_artifact_id
from tests.jobs.conftest import BurstRunner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def slice_files() -> Iterator[None]:
    """This directory's prompt and samples, found by name like a shipped agent's."""
    assert not (PROMPTS_DIR / f"{PROMPT_NAME}.j2").exists()
    with extra_prompt_dir(HERE), extra_sample_dir(HERE):
        yield


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    """The scripted LLM by name (ORRERY_LLM=scripted): the LLM resource opens the demo's scripted server."""
    configured = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        poll_delay_s=0.01,
        openai_api_key=None,
        openai_base_url=None,
        llm="scripted",
    )
    assert configured.llm_is_scripted
    return configured


async def run_burst(settings: Settings, database_url: str, redis_url: str) -> None:
    """A burst worker on both queues (the slice runs on the interactive one, the stores' sync it starts on the batch
    one) over the catalog plus the slice, until the queues are empty."""
    burst = BurstRunner(settings, database_url, redis_url)
    burst.jobs = JOBS.with_jobs(SLICE_NOTE)
    await burst(queues=QUEUES)


async def llm_calls(pool: asyncpg.Pool) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT user_id, job_id, agent, prompt_name, prompt_version, purpose, outcome FROM runtime.llm_calls"
    )
    return [dict(row) for row in rows]


async def test_a_new_agent_slice_runs_through_a_real_worker_and_the_demo_scripted_llm(
    slice_files: None,
    settings: Settings,
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
) -> None:
    text = "Today I ran my first 5k without walking once, and I felt unstoppable."
    await users.create_user(pool, "user-1", email="user-1@example.org")
    queued = await enqueue(redis_client, pool, SLICE_NOTE, {"user_id": "user-1", "note_id": "n1", "text": text})

    await run_burst(settings, database_url, redis_url)

    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and (run.state, run.attempt, run.error) == ("succeeded", 1, None)
    assert run.result == {"note_id": "n1", "title": "First 5k run", "written": True, "llm_calls": 1}
    expected = load_sample_answers(PROMPT_NAME, directory=HERE)[0].answer
    artifact_id = note_artifact_id("user-1", "n1")
    kept = await pool.fetchrow("SELECT * FROM derived_artifacts WHERE artifact_id = $1", artifact_id)
    assert kept is not None and (kept["user_id"], kept["title"], kept["generated_by_agent"]) == (
        "user-1",
        expected["title"],
        "NoteAgent",
    )
    assert kept["content_data"] == {"note_id": "n1", "mood": expected["mood"], "tags": expected["tags"]}
    # the outbox row it recorded was applied by the sync it started: both derived stores hold the artifact
    assert await pool.fetchval("SELECT count(*) FROM runtime.outbox WHERE user_id = 'user-1'") == 0
    assert await pool.fetchval("SELECT count(*) FROM runtime.graph_nodes WHERE node_key = $1", artifact_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM runtime.vector_items WHERE source_entity_id = $1", artifact_id)
    assert await redis_client.get(dead_key("n1")) is None
    assert await llm_calls(pool) == [
        {
            "user_id": "user-1",
            "job_id": queued.job_id,
            "agent": AGENT_NAME,
            "prompt_name": PROMPT_NAME,
            "prompt_version": load_prompt(PROMPT_NAME).version,
            "purpose": "answer",
            "outcome": "ok",
        }
    ]


async def test_a_note_its_samples_do_not_answer_is_dead_once_and_marked_by_the_slice_dead_hook(
    slice_files: None,
    settings: Settings,
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
) -> None:
    await users.create_user(pool, "user-1", email="user-1@example.org")
    args = {"user_id": "user-1", "note_id": "n2", "text": "Nothing in the samples says this."}
    queued = await enqueue(redis_client, pool, SLICE_NOTE, args)

    await run_burst(settings, database_url, redis_url)

    run = await ledger.latest_run(pool, queued.job_id)
    assert run is not None and (run.state, run.attempt) == ("dead", 1)  # a 400 is permanent: no second try
    assert "no sample answer for prompt 'slice_note' matches" in (run.error or "")
    reason = await redis_client.get(dead_key("n2"))
    assert reason is not None and "slice_note" in reason.decode()
    assert await pool.fetchval("SELECT count(*) FROM derived_artifacts WHERE user_id = 'user-1'") == 0
    assert [(c["prompt_name"], c["outcome"]) for c in await llm_calls(pool)] == [(PROMPT_NAME, "bad_request")]


def test_the_how_to_names_files_of_this_slice_that_exist() -> None:
    named = set(re.findall(r"tests/agent_slice/[\w.]+", (ROOT / "docs" / "agents.md").read_text(encoding="utf-8")))
    assert len(named) >= 5 and all((ROOT / path).is_file() for path in named), sorted(named)
