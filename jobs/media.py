"""The media job: one attachment (media_items) read into text, once; and the sweep that finds the ones waiting.

Status: `pending` becomes `processing` when a run starts, then `processed` with `metadata.reading`, or `failed` with
`metadata.failure`: at once when the file itself is at fault (missing, too large, of the wrong type, damaged: one
clear failure, the run succeeds and is not retried), or from the dead hook when the storage or the model kept failing
until the tries were spent. So an item never stays `processing` and ingestion, which waits for it a bounded number of
times, always learns how it ended.

Idempotent: the job id is `media:{media_id}`; a `processed` or `failed` item is left as it is (no fetch, no model
call) unless `reprocess=true`; the final write is a conditional transition from `processing`, so a second run that
raced the first changes nothing. Tenant rule: the item is read by its bare id (its owner resolved from the row) and
every statement after that is scoped to the owner; an item is only ever shown to its owner's ingestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from core.errors import PermanentError
from core.media import FailureCode, MediaFailure, MediaKind, MediaReadError, MediaStatus
from jobs.resources import LLM
from jobs.runtime.context import JobContext
from jobs.runtime.keys import INTERACTIVE
from jobs.runtime.registry import JobSpec
from jobs.user_locale import language_choice_for
from settings import Settings
from store.media_files import FetchLimits, fetch_media
from store.repos import media_items, users

if TYPE_CHECKING:
    from agents.media import MediaInput


class MediaArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media_id: str = Field(min_length=1, max_length=200, description="media_items.media_id to read")
    reprocess: bool = Field(False, description="Read a processed or failed item again, replacing its reading")


def fetch_limits(settings: Settings) -> FetchLimits:
    return FetchLimits(
        max_bytes=settings.media_max_bytes,
        timeout_s=settings.media_fetch_timeout_s,
        file_root=settings.resolved_media_root,
        allowed_hosts=frozenset(settings.media_allowed_hosts),
    )


def failure(code: FailureCode, reason: str) -> MediaFailure:
    return MediaFailure(code=code, reason=reason[:1000], at=datetime.now(UTC).isoformat())


async def read_media(ctx: JobContext, args: MediaArgs) -> Mapping[str, Any]:
    """Fetch → read (at most one model call) → write the reading, or the item's failure."""
    from agents.media import MediaAgent

    item = await media_items.read_media_for_job(ctx.pool, args.media_id)
    if item is None:
        raise PermanentError(f"media item {args.media_id} does not exist; nothing to read")
    user_id = item.user_id
    ctx.bind(user_id=user_id, media_id=item.media_id)
    done = item.processing_status in (MediaStatus.PROCESSED, MediaStatus.FAILED)
    if done and not args.reprocess:
        ctx.log.info("media.skipped", status=item.processing_status)
        return {"media_id": item.media_id, "outcome": f"already_{item.processing_status}"}
    try:
        kind = MediaKind(item.type)
    except ValueError:
        kind = None
    if not await media_items.start_processing(ctx.pool, user_id, item.media_id, reprocess=args.reprocess):
        return {"media_id": item.media_id, "outcome": "not_pending"}  # another run finished it meanwhile
    try:
        if kind is None:
            kinds = ", ".join(k.value for k in MediaKind)
            raise MediaReadError(FailureCode.WRONG_TYPE, f"media type {item.type[:40]!r} is none of {kinds}")
        fetched = await fetch_media(item.storage_url, fetch_limits(ctx.settings))
        llm = await ctx.resource(LLM) if kind is not MediaKind.DOCUMENT else _NO_MODEL
        agent = MediaAgent.from_settings(llm, ctx.settings)
        reading = await agent.read(await media_input(ctx, item, kind), fetched.data, job_id=ctx.job_id)
    except MediaReadError as exc:
        await media_items.mark_media_failed(ctx.pool, user_id, item.media_id, failure(exc.code, exc.reason))
        ctx.log.warning("media.unreadable", code=exc.code.value, reason=exc.reason)
        return {"media_id": item.media_id, "outcome": "failed", "code": exc.code.value}
    written = await media_items.mark_media_processed(ctx.pool, user_id, item.media_id, reading)
    ctx.log.info("media.read", method=reading.method.value, chars=len(reading.text), written=written)
    return {
        "media_id": item.media_id,
        "outcome": "processed" if written else "not_pending",
        "method": reading.method.value,
        "chars": len(reading.text),
        "truncated": reading.truncated,
    }


async def media_input(ctx: JobContext, item: media_items.MediaItemRecord, kind: MediaKind) -> MediaInput:
    """The item as the agent reads it, with its owner's language: an image is described in the language they read,
    audio transcribed with the language they speak as the endpoint's hint (a document needs neither)."""
    from agents.media import MediaInput

    base = MediaInput(media_id=item.media_id, user_id=item.user_id, kind=kind, filename=item.filename)
    if kind is MediaKind.DOCUMENT:
        return base
    owner = await users.get_user(ctx.pool, item.user_id)
    if owner is None:
        raise PermanentError(f"user {item.user_id} was deleted while their attachment was being read")
    choice = language_choice_for(ctx.log, item.user_id, owner.language_preference)
    return base.model_copy(update={"language": choice.language, "speech_code": choice.speech_code})


class _NoModel:
    """The LLM port of a document's reading, which calls no model (and must not open the LLM resource)."""

    async def complete(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("a document is read without a model")

    async def transcribe(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("a document is read without a model")


_NO_MODEL: Any = _NoModel()


async def mark_failed_when_dead(ctx: JobContext, args: MediaArgs, reason: str) -> None:
    """A dead run (the storage or the model kept failing, a timeout, a permanent error) leaves the item `failed`
    with the reason, so ingestion stops waiting for it and the sweep stops enqueueing it; a `processed` item keeps
    its reading (a failed reprocess)."""
    if "\x00" in args.media_id:
        return  # Postgres cannot hold it, so no item has this id
    item = await media_items.read_media_for_job(ctx.pool, args.media_id)
    if item is None:
        return
    marked = await media_items.mark_media_failed(
        ctx.pool, item.user_id, item.media_id, failure(FailureCode.UNAVAILABLE, reason)
    )
    ctx.log.warning("media.dead", media_id=item.media_id, user_id=item.user_id, marked=marked)


MEDIA = JobSpec(
    name="media",
    args_model=MediaArgs,
    handler=read_media,
    queue=INTERACTIVE,  # ingestion of the conversation waits for it
    timeout_s=300,
    max_tries=4,
    backoff_s=10,
    dedupe_key="media:{media_id}",
    cron=None,
    on_dead=mark_failed_when_dead,
    resources=(LLM,),
    description=(
        "Read one attachment into text: describe an image, transcribe audio, extract a document's text.\n"
        "Enqueued by ingestion for its conversation's attachments, by the media sweep, or by the web app on upload;\n"
        "`--arg reprocess=true` reads a processed or failed item again."
    ),
)


class SweepMediaArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(500, ge=1, le=10_000, description="Media jobs enqueued per run at most.")


async def sweep_media(ctx: JobContext, args: SweepMediaArgs) -> Mapping[str, Any]:
    """Enqueue the media job of every item still to read (`pending`, or `processing` by a lost run), whether or not a
    conversation cites it. Idempotent: under the dedupe key an item already queued or running is not enqueued
    again."""
    enqueued = 0
    waiting = await media_items.waiting_media_ids(ctx.pool, limit=args.limit)
    for media_id in waiting:
        enqueued += (await ctx.enqueue(MEDIA, {"media_id": media_id})).enqueued
    if enqueued:
        ctx.log.info("media swept", enqueued=enqueued)
    return {"waiting": len(waiting), "enqueued": enqueued}


SWEEP_MEDIA = JobSpec(
    name="sweep_media",
    args_model=SweepMediaArgs,
    handler=sweep_media,
    queue=INTERACTIVE,
    timeout_s=50,
    max_tries=1,  # the next run is the retry
    backoff_s=0,
    dedupe_key="sweep_media",
    cron="*/5 * * * *",
    description="Enqueue the media job of every attachment still pending (or left processing by a lost run).",
)
