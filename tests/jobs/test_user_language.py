"""The user's language reaches every agent that writes what they read: the Portuguese sample user's conversations
(one with a photo) are ingested and their cycle closed by a real worker, through the real openai client, against the
scripted server; every request the server received names Portuguese in the user's data, and what was written is the
Portuguese sample answers the server chose by that line."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from agents.scripted_llm import ScriptedLLMServer, load_all_sample_answers
from core.media import MediaKind
from jobs.cycle import STEPS, step_args
from jobs.ingestion import INGEST
from jobs.insight import INSIGHT
from jobs.media import MEDIA
from jobs.runtime.enqueue import enqueue
from settings import Settings
from store import ledger
from store.cycles import read_cycle
from store.repos import derived_artifacts, media_items, memory_units, proactive_prompts
from store.samples.loader import PORTUGUESE_SAMPLE_FILE, SAMPLES_DIR, seed_sample_user
from tests.jobs.conftest import BurstRunner

PORTUGUESE = "<language>\nPortuguese (Portugal) [pt-PT]\n</language>"
WRITERS = {"ingestion", "insight", "proactive_prompts", "cycle_report", "media_image"}
"""Every agent whose text the user reads (an image's description is shown to them through their memories); a voice
note is transcribed in the language spoken, the user's given to the endpoint as its hint."""


pytestmark = pytest.mark.scripted_llm(answers=load_all_sample_answers(), llm_max_retries=2)


async def test_every_writing_agent_is_told_the_user_s_language_and_writes_in_it(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    settings: Settings,
) -> None:
    seeded = await seed_sample_user(
        pool, redis_client, path=PORTUGUESE_SAMPLE_FILE, media_dir=settings.resolved_media_root
    )
    for conversation in seeded.conversations:
        await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.conversation_id})
    await run_burst()
    state = await read_cycle(pool, seeded.user_id)
    assert state is not None
    await enqueue(redis_client, pool, INSIGHT, step_args(state.cycle), job_id=state.cycle.job_id(STEPS[0]))
    await run_burst()
    for step in STEPS[:3]:
        run = await ledger.latest_run(pool, state.cycle.job_id(step))
        assert run is not None and run.state == "succeeded", (step, run)

    voice = settings.resolved_media_root / seeded.user_id / "bakery-order.wav"
    voice.write_bytes((SAMPLES_DIR / "media" / "bakery-order.wav").read_bytes())
    await media_items.insert_media_item(
        pool, seeded.user_id, kind=MediaKind.AUDIO, storage_url=voice.as_uri(), filename=voice.name, media_id="voice"
    )
    await enqueue(redis_client, pool, MEDIA, {"media_id": "voice"})
    await run_burst()
    [transcription] = llm_server.transcription_requests
    assert transcription.form["language"] == "pt"

    requests = llm_server.chat_requests
    assert {r.prompt_name for r in requests} >= WRITERS
    for request in (r for r in requests if r.prompt_name in WRITERS):
        system, user = request.message_text("system"), request.message_text("user")
        assert "language named in <language>" in system, request.prompt_name
        assert user.startswith(PORTUGUESE), (request.prompt_name, user[:200])

    (photo,) = [m for m in await media_items.list_media_items(pool, seeded.user_id) if m.type == "image"]
    assert photo.reading is not None and photo.reading.text.startswith("Um relógio de corrida")
    titles = {m.title for m in await memory_units.list_memory_units(pool, seeded.user_id)}
    assert "14 km com a Marta à volta da lagoa" in titles  # from the photo's conversation
    artifacts = await derived_artifacts.list_derived_artifacts(pool, seeded.user_id)
    assert {a.title for a in artifacts} >= {"Uma semana de escolhas", "Uma semana entre o barro e o Porto"}
    pending = await proactive_prompts.list_proactive_prompts(pool, seeded.user_id)
    assert any(p.prompt_text.startswith("Já sabe o que vai responder") for p in pending)


async def test_a_preference_that_names_no_language_is_english_and_one_warning(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    llm_server: ScriptedLLMServer,
    settings: Settings,
) -> None:
    seeded = await seed_sample_user(
        pool, redis_client, path=PORTUGUESE_SAMPLE_FILE, media_dir=settings.resolved_media_root
    )
    await pool.execute(
        "UPDATE users SET language_preference = $2 WHERE user_id = $1", seeded.user_id, "portuguese please"
    )
    first = next(c for c in seeded.conversations if c.key == "ceramica")
    with structlog.testing.capture_logs() as logs:
        await enqueue(redis_client, pool, INGEST, {"conversation_id": first.conversation_id})
        await run_burst()
    run = await ledger.latest_run(pool, f"ingest:{first.conversation_id}")
    assert run is not None and run.state == "succeeded"
    (request,) = [r for r in llm_server.chat_requests if r.prompt_name == "ingestion"]
    assert request.message_text("user").startswith("<language>\nEnglish [en]\n</language>")
    warnings = [line for line in logs if line["event"] == "user.language_unusable"]
    assert len(warnings) == 1 and "'portuguese please' is not a BCP-47 tag" in warnings[0]["problem"]
