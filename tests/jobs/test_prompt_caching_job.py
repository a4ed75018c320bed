"""Prompt caching end to end: two of the sample user's conversations ingested one after the other by a real worker,
through the real openai client, against the scripted server that caches prefixes as OpenAI does. The second call
reports its shared prefix as cached; runtime.llm_calls keeps it and `run.py jobs show` prices it."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import ScriptedLLMServer, load_sample_answers
from agents.scripted_prompt_cache import count_tokens, prompt_text, schema_text
from jobs.ingestion import INGEST
from jobs.runtime.enqueue import enqueue
from jobs.runtime.metrics import list_price_usd
from store.llm_calls import list_llm_calls
from store.samples.loader import seed_sample_user
from tests.agents.test_scripted_prompt_cache import shared_prefix_tokens
from tests.cli.runner import run_cli
from tests.jobs.conftest import BurstRunner, cli_env

pytestmark = pytest.mark.scripted_llm(answers=load_sample_answers(), llm_max_retries=2)


async def test_a_second_ingestion_of_the_same_user_reports_the_shared_prefix_as_cached(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    seeded = await seed_sample_user(pool, redis_client)
    by_key = {c.key: c.conversation_id for c in seeded.conversations}
    job_ids = []
    for key in ("half-marathon", "career-crossroads"):  # one after the other: the second finds the first cached
        result = await enqueue(redis_client, pool, INGEST, {"conversation_id": by_key[key]})
        job_ids.append(result.job_id)
        await run_burst()

    calls = {c.call.job_id: c.call for c in await list_llm_calls(pool, seeded.user_id)}
    first, second = (calls[job_id] for job_id in job_ids)
    sent = [prompt_text(request.body) for request in llm_server.chat_requests]
    assert len(sent) == 2 and first.outcome.value == second.outcome.value == "ok"
    assert first.cached_tokens == 0  # nothing was seen before
    assert second.cached_tokens == shared_prefix_tokens(sent[0], sent[1])
    # the shared prefix covers at least the static part (schema, system message) and ends in the user's data
    request = llm_server.chat_requests[1]
    static = count_tokens(schema_text(request.body)) + count_tokens(request.messages[0]["content"])
    assert static - static % 128 <= second.cached_tokens < second.prompt_tokens

    env = cli_env(database_url, redis_url, tmp_path)
    shown = run_cli("jobs", "show", job_ids[1], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    (call,) = json.loads(shown.stdout)["llm_calls"]
    assert (call["prompt_tokens"], call["cached_tokens"], call["completion_tokens"]) == (
        second.prompt_tokens,
        second.cached_tokens,
        second.completion_tokens,
    )
    assert call["model"] == "gpt-4o-mini"
    expected = (
        (second.prompt_tokens - second.cached_tokens) * 0.15
        + second.cached_tokens * 0.075
        + second.completion_tokens * 0.60
    ) / 1_000_000
    assert call["estimated_cost_usd"] == pytest.approx(expected)
    undiscounted = list_price_usd("gpt-4o-mini", second.prompt_tokens, second.completion_tokens)
    assert undiscounted is not None and undiscounted > expected
    text = run_cli("jobs", "show", job_ids[1], env=env)
    assert text.returncode == 0, text.stderr
    assert f"{second.prompt_tokens} prompt tokens ({second.cached_tokens} cached)" in text.stdout, text.stdout
