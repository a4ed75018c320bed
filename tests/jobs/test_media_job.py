"""The media job and ingestion's attachments through a real burst worker, real Postgres and Redis, and the scripted
LLM over HTTP: each kind read once (a rerun makes no model call), a bad file one failure without retries, storage
trouble retried then failed by the dead hook, ingestion waiting a bounded number of times and linking the memory
units to their attachments, and nobody's attachment shown to another user."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.scripted_llm import KeyedAnswer, ScriptedLLMServer, load_all_sample_answers
from clients.contract import AttachmentWait
from core.media import MediaFailure, MediaKind
from jobs.ingestion import INGEST
from jobs.media import MEDIA, SWEEP_MEDIA
from jobs.runtime.enqueue import enqueue
from settings import Settings
from store import ledger
from store.llm_calls import list_llm_calls
from store.repos import conversations, media_items, memory_units, users
from store.samples.loader import seed_sample_user
from tests.jobs.conftest import BurstRunner
from tests.jobs.testjobs import replacing
from tests.media.files import tiny_pdf, tiny_png, tiny_wav

PHOTO_ANSWER = {"description": "A finish line with a clock.", "visible_text": "21.1 km"}
VOICE_TEXT = "Remember to stretch after the long run."
INGESTION_ANSWER: dict[str, Any] = {
    "title": "Race photo",
    "context_summary": "The user shared a race photo.",
    "importance_score": 7,
    "memory_units": [
        {
            "key": "m1",
            "title": "Finished the half marathon",
            "content": "The user finished a half marathon; the photo shows the finish clock.",
            "creation_ts": None,
            "importance": 8,
            "sentiment": 0.9,
            "attachment": "a1",
        }
    ],
    "concepts": [],
    "relationships": [],
    "growth_events": [],
    "forward_context": {"proactive_greeting": "Congratulations!", "unresolved_topics": [], "suggested_focus": None},
}


class _SlowStorage(BaseHTTPRequestHandler):
    """Serves the PNG after a delay: an attachment still being read when ingestion stops waiting."""

    protocol_version = "HTTP/1.1"
    delay_s = 2.0

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        body = tiny_png()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_storage() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStorage)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


pytestmark = pytest.mark.scripted_llm(
    answers=[
        KeyedAnswer("name: finish.png", PHOTO_ANSWER, "media_image"),
        KeyedAnswer("voice.wav", {"text": VOICE_TEXT}, "media_transcription"),
        KeyedAnswer("Look at my race photo", INGESTION_ANSWER, "ingestion"),
        *load_all_sample_answers(),
    ],
    llm_timeout_s=5,
    llm_max_retries=0,
    media_max_bytes=5000,
    media_allowed_hosts=["127.0.0.1"],
    media_wait_s=0.2,
    media_wait_tries=2,
)


@pytest.fixture
def run_burst(run_burst: BurstRunner) -> BurstRunner:
    """Media jobs retried within milliseconds, so a storage outage reaches the dead hook within the test."""
    run_burst.jobs = replacing(run_burst.jobs, dataclasses.replace(MEDIA, backoff_s=0.05, max_tries=2))
    return run_burst


async def new_user(pool: asyncpg.Pool) -> str:
    return (await users.create_user(pool, str(uuid.uuid4()), email=f"{uuid.uuid4().hex}@example.org")).user_id


async def upload(
    pool: asyncpg.Pool, settings: Settings, user_id: str, name: str, data: bytes, kind: MediaKind, **row: Any
) -> str:
    """Write the file where the web app's uploads go (the media root) and its media_items row, `pending`."""
    path = settings.resolved_media_root / user_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    media_id = str(uuid.uuid4())
    url = row.pop("storage_url", path.as_uri())
    await media_items.insert_media_item(
        pool, user_id, kind=kind, storage_url=url, filename=name, media_id=media_id, **row
    )
    return media_id


async def item(pool: asyncpg.Pool, media_id: str) -> media_items.MediaItemRecord:
    found = await media_items.read_media_for_job(pool, media_id)
    assert found is not None
    return found


async def test_each_kind_is_read_once_found_by_the_sweep_and_a_rerun_makes_no_model_call(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    user_id = await new_user(pool)
    photo = await upload(pool, settings, user_id, "finish.png", tiny_png(), MediaKind.IMAGE)
    voice = await upload(pool, settings, user_id, "voice.wav", tiny_wav(), MediaKind.AUDIO)
    plan = await upload(pool, settings, user_id, "plan.pdf", tiny_pdf("Taper week: rest"), MediaKind.DOCUMENT)
    await pool.execute("UPDATE media_items SET processing_status = 'processing' WHERE media_id = $1", plan)  # died

    await enqueue(redis_client, pool, SWEEP_MEDIA, {})
    await run_burst()

    photo_item, voice_item, plan_item = [await item(pool, m) for m in (photo, voice, plan)]
    assert {i.processing_status for i in (photo_item, voice_item, plan_item)} == {"processed"}
    assert photo_item.reading is not None and photo_item.reading.text.startswith("A finish line with a clock.")
    assert voice_item.reading is not None and voice_item.reading.text == VOICE_TEXT
    assert plan_item.reading is not None and plan_item.reading.text == "Taper week: rest"
    calls = await list_llm_calls(pool, user_id)
    assert sorted(c.call.prompt_name for c in calls) == ["media_image", "media_transcription"]
    assert {c.call.job_id for c in calls} == {f"media:{photo}", f"media:{voice}"}

    for media_id in (photo, voice, plan):  # a duplicate delivery or a re-trigger: no fetch, no model call
        await enqueue(redis_client, pool, MEDIA, {"media_id": media_id})
    await run_burst()
    assert len(await list_llm_calls(pool, user_id)) == 2
    rerun = await ledger.latest_run(pool, f"media:{photo}")
    assert rerun is not None and rerun.result == {"media_id": photo, "outcome": "already_processed"}

    await enqueue(redis_client, pool, MEDIA, {"media_id": photo, "reprocess": True})
    await run_burst()
    assert len(await list_llm_calls(pool, user_id)) == 3  # asked for: read again


async def test_a_bad_file_is_one_failure_and_a_failing_storage_is_retried_then_failed(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, run_burst: BurstRunner, settings: Settings
) -> None:
    user_id = await new_user(pool)
    absent = (settings.resolved_media_root / user_id / "absent.png").as_uri()
    bad = [
        ("missing", await upload(pool, settings, user_id, "a.png", b"", MediaKind.IMAGE, storage_url=absent)),
        ("too_large", await upload(pool, settings, user_id, "big.wav", tiny_wav(frames=5000), MediaKind.AUDIO)),
        ("wrong_type", await upload(pool, settings, user_id, "photo.png", tiny_pdf("not a photo"), MediaKind.IMAGE)),
        ("wrong_type", await upload(pool, settings, user_id, "clip.png", tiny_png(), MediaKind.IMAGE)),
        ("refused_url", await upload(pool, settings, user_id, "x.png", b"", MediaKind.IMAGE, storage_url="s3://b/x")),
        (
            "refused_url",
            await upload(pool, settings, user_id, "y.png", b"", MediaKind.IMAGE, storage_url="file:///etc/hostname"),
        ),
        ("unreadable", await upload(pool, settings, user_id, "scan.pdf", b"%PDF-1.4 broken", MediaKind.DOCUMENT)),
    ]
    await pool.execute("UPDATE media_items SET type = 'video' WHERE media_id = $1", bad[3][1])  # no kind of ours
    down = await upload(pool, settings, user_id, "z.png", b"", MediaKind.IMAGE, storage_url="http://127.0.0.1:9/z.png")
    for _, media_id in bad:
        await enqueue(redis_client, pool, MEDIA, {"media_id": media_id})
    await enqueue(redis_client, pool, MEDIA, {"media_id": down})
    await run_burst()

    for code, media_id in bad:
        found = await item(pool, media_id)
        failure = MediaFailure.model_validate((found.metadata or {}).get("failure"))  # as docs/contract.md says
        assert found.processing_status == "failed" and failure.code == code, (code, found.metadata)
        run = await ledger.latest_run(pool, f"media:{media_id}")
        assert run is not None and run.state == "succeeded" and run.attempt == 1  # the file's fault: not retried
    assert "outside ORRERY_MEDIA_FILE_ROOT" in str((await item(pool, bad[5][1])).failure_reason)

    gone = await item(pool, down)  # the storage kept refusing: retried, then the dead hook marked it
    assert gone.processing_status == "failed" and (gone.metadata or {})["failure"]["code"] == "unavailable"
    run = await ledger.latest_run(pool, f"media:{down}")
    assert run is not None and run.state == "dead" and run.attempt == 2
    assert await list_llm_calls(pool, user_id) == []


async def test_ingestion_waits_for_its_attachments_and_links_the_memory_they_gave(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    settings: Settings,
    llm_server: ScriptedLLMServer,
) -> None:
    """The sample user's conversation with a photo and a voice note: ingestion is enqueued alone, enqueues their
    media jobs, waits, then sees what was read and links each memory unit to its attachment."""
    seeded = await seed_sample_user(pool, redis_client, media_dir=settings.resolved_media_root)
    conversation_id = next(c.conversation_id for c in seeded.conversations if c.key == "morning-attachments")
    await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation_id})
    await run_burst()

    run = await ledger.latest_run(pool, f"ingest:{conversation_id}")
    assert run is not None and run.state == "succeeded" and run.result is not None
    assert run.result["attachments"] == {"read": 2, "unread": 0} and run.result["attachments_linked"] == 2
    [prompt] = [r for r in llm_server.chat_requests if r.prompt_name == "ingestion"]
    text = prompt.message_text("user")
    assert "<attachments>" in text and "14.1 km" in text and "Bom dia, Dona Graça!" in text

    units = {u.muid: u.title for u in await memory_units.list_memory_units(pool, seeded.user_id)}
    [message] = [m for m in await conversations.list_messages(pool, seeded.user_id, conversation_id) if m.media_ids]
    linked = {
        (i.filename, units.get(i.memory_unit_id or ""))
        for i in await media_items.list_media_items(pool, seeded.user_id, message.media_ids)
    }
    assert linked == {
        ("watch-14k.png", "Longest run yet: 14 km"),
        ("bakery-order.wav", "Ordered at the bakery in Portuguese (voice note)"),
    }
    conversation = await conversations.get_conversation(pool, seeded.user_id, conversation_id)
    assert conversation is not None and conversation.status == "processed"
    assert (conversation.metadata or {})["attachment_wait"]["deferrals"] >= 1


async def test_ingestion_stops_waiting_after_the_bounded_tries_and_says_so(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    settings: Settings,
    llm_server: ScriptedLLMServer,
    slow_storage: str,
) -> None:
    user_id = await new_user(pool)
    photo = await upload(
        pool, settings, user_id, "finish.png", b"", MediaKind.IMAGE, storage_url=f"{slow_storage}/finish.png"
    )
    conversation = await conversations.create_conversation(pool, user_id, status="ended")
    await conversations.add_message(
        pool, user_id, conversation.id, role="user", content="Look at my race photo!", media_ids=[photo]
    )
    await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
    await run_burst()

    run = await ledger.latest_run(pool, f"ingest:{conversation.id}")
    assert run is not None and run.state == "succeeded" and run.result is not None
    assert run.result["attachments"] == {"read": 0, "unread": 1}
    ingested = await conversations.get_conversation(pool, user_id, conversation.id)
    assert ingested is not None and ingested.status == "processed"
    wait = AttachmentWait.model_validate((ingested.metadata or {})["attachment_wait"])  # as docs/contract.md says
    assert wait.deferrals == 3  # two waits, then on without it
    [prompt] = [r for r in llm_server.chat_requests if r.prompt_name == "ingestion"]
    assert "(not read: it was still being read when the conversation was ingested)" in prompt.message_text("user")
    # the model cited the unread attachment by its handle: the link is made all the same
    assert (await item(pool, photo)).memory_unit_id is not None
    assert (await item(pool, photo)).processing_status == "processed"  # read later, by its own job


async def test_a_message_citing_another_users_attachment_shows_nothing_of_it(
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    run_burst: BurstRunner,
    settings: Settings,
    llm_server: ScriptedLLMServer,
) -> None:
    owner, other = await new_user(pool), await new_user(pool)
    photo = await upload(pool, settings, owner, "finish.png", tiny_png(), MediaKind.IMAGE)
    conversation = await conversations.create_conversation(pool, other, status="ended")
    await conversations.add_message(
        pool, other, conversation.id, role="user", content="Look at my race photo!", media_ids=[photo]
    )
    await enqueue(redis_client, pool, INGEST, {"conversation_id": conversation.id})
    await run_burst()

    run = await ledger.latest_run(pool, f"ingest:{conversation.id}")
    assert run is not None and run.state == "dead"  # the answer cites "a1": nothing was shown, repaired, refused
    [prompt, _repair] = [r for r in llm_server.chat_requests if r.prompt_name == "ingestion"]
    assert "<attachments>" not in prompt.message_text("user")
    untouched = await item(pool, photo)
    assert untouched.processing_status == "pending" and untouched.memory_unit_id is None
    assert await ledger.latest_run(pool, f"media:{photo}") is None  # not enqueued for the other user either
