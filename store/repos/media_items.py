"""public.media_items: the attachments the web app uploads (pending), as the media job reads them (processing →
processed | failed, with the reading or the failure in metadata) and ingestion links them to memory units.

The web app owns the row (its URL, name, declared type, size, hash); Orrery writes only `processing_status`,
`metadata.reading` / `metadata.failure` (core/media.py, docs/contract.md) and `memory_unit_id`. Other metadata keys
are kept; a metadata value that is not an object is kept under `previous_metadata`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.media import MediaFailure, MediaKind, MediaReading, MediaStatus
from store.postgres import Executor
from store.repos._base import JsonObject, Record, UtcDatetime, new_id, row_count


class MediaItemRecord(Record):
    media_id: str
    user_id: str
    memory_unit_id: str | None
    type: str
    storage_url: str
    filename: str | None
    mime_type: str | None
    size_bytes: int | None
    hash: str | None
    processing_status: str
    metadata: JsonObject
    created_at: UtcDatetime

    @property
    def reading(self) -> MediaReading | None:
        """What was read, when the item is processed and its reading is one Orrery wrote (else None)."""
        found = (self.metadata or {}).get("reading")
        if self.processing_status != MediaStatus.PROCESSED or not isinstance(found, dict):
            return None
        try:
            return MediaReading.model_validate(found)
        except ValueError:
            return None

    @property
    def failure_reason(self) -> str | None:
        found = (self.metadata or {}).get("failure")
        if self.processing_status != MediaStatus.FAILED:
            return None
        return str(found.get("reason")) if isinstance(found, dict) else "failed (no reason recorded)"


_OBJECT = (
    "(CASE WHEN metadata IS NULL OR metadata = 'null'::jsonb THEN '{}'::jsonb "
    "WHEN jsonb_typeof(metadata) = 'object' THEN metadata "
    "ELSE jsonb_build_object('previous_metadata', metadata) END)"
)
"""The item's metadata as an object to add a key to: the web app's keys kept, a non-object kept aside."""


async def insert_media_item(
    db: Executor,
    user_id: str,
    *,
    kind: MediaKind,
    storage_url: str,
    filename: str | None = None,
    mime_type: str | None = None,
    size_bytes: int | None = None,
    media_id: str | None = None,
) -> bool:
    """An uploaded attachment, `pending`, as the web app writes one (the sample user's seeding does the same);
    False when the id exists already (a rerun of the seeding). The web app's `hash` is left to it: it is unique
    across all users, so Orrery never writes it."""
    status = await db.execute(
        "INSERT INTO media_items (media_id, user_id, type, storage_url, filename, mime_type, size_bytes) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (media_id) DO NOTHING",
        media_id or new_id(),
        user_id,
        kind.value,
        storage_url,
        filename,
        mime_type,
        size_bytes,
    )
    return row_count(status) == 1


async def read_media_for_job(db: Executor, media_id: str) -> MediaItemRecord | None:
    """The one function without a user id, by design: the media job is enqueued with a bare media id (by the web
    app, ingestion or the sweep), and this resolves its owner; everything after it is scoped to that user."""
    row = await db.fetchrow("SELECT * FROM media_items WHERE media_id = $1", media_id)
    return MediaItemRecord.from_optional(row)


async def list_media_items(db: Executor, user_id: str, media_ids: Sequence[str] | None = None) -> list[MediaItemRecord]:
    """The user's own items among `media_ids`, in the order given (an id of another user's item, or of none, is
    skipped: a message can only ever show its author's attachments); all the user's items, oldest first, without."""
    if media_ids is None:
        rows = await db.fetch("SELECT * FROM media_items WHERE user_id = $1 ORDER BY created_at, media_id", user_id)
        return [MediaItemRecord.from_row(row) for row in rows]
    rows = await db.fetch(
        "SELECT m.* FROM unnest($2::text[]) WITH ORDINALITY AS wanted(id, n) "
        "JOIN media_items m ON m.media_id = wanted.id AND m.user_id = $1 ORDER BY wanted.n",
        user_id,
        list(dict.fromkeys(media_ids)),
    )
    return [MediaItemRecord.from_row(row) for row in rows]


async def start_processing(db: Executor, user_id: str, media_id: str, *, reprocess: bool = False) -> bool:
    """`pending` (or `processing`: a run that died half-way) becomes `processing`; with `reprocess`, `processed` and
    `failed` do too. False when nothing changed (the item is done, or not this user's)."""
    allowed = [MediaStatus.PENDING, MediaStatus.PROCESSING]
    if reprocess:
        allowed += [MediaStatus.PROCESSED, MediaStatus.FAILED]
    status = await db.execute(
        "UPDATE media_items SET processing_status = 'processing' "
        "WHERE media_id = $2 AND user_id = $1 AND processing_status = ANY($3::text[])",
        user_id,
        media_id,
        [str(value) for value in allowed],
    )
    return row_count(status) == 1


async def mark_media_processed(db: Executor, user_id: str, media_id: str, reading: MediaReading) -> bool:
    """`processing` becomes `processed` with `metadata.reading` (a failure recorded before is removed); False when
    the item was not `processing` (another run finished it first), so a second writer changes nothing."""
    status = await db.execute(
        f"UPDATE media_items SET processing_status = 'processed', "
        f"metadata = ({_OBJECT} - 'failure') || jsonb_build_object('reading', $3::jsonb) "
        "WHERE media_id = $2 AND user_id = $1 AND processing_status = 'processing'",
        user_id,
        media_id,
        reading.model_dump(mode="json"),
    )
    return row_count(status) == 1


async def mark_media_failed(db: Executor, user_id: str, media_id: str, failure: MediaFailure) -> bool:
    """`pending` or `processing` becomes `failed` with `metadata.failure`; a `processed` item keeps its reading (a
    failed reprocess changes nothing). False when nothing changed."""
    status = await db.execute(
        f"UPDATE media_items SET processing_status = 'failed', "
        f"metadata = {_OBJECT} || jsonb_build_object('failure', $3::jsonb) "
        "WHERE media_id = $2 AND user_id = $1 AND processing_status IN ('pending', 'processing')",
        user_id,
        media_id,
        failure.model_dump(mode="json"),
    )
    return row_count(status) == 1


async def link_memory_units(
    db: Executor, user_id: str, links: Mapping[str, str], *, replacing: Sequence[str] = ()
) -> int:
    """Point each item of `links` (media id → memory unit id) at the memory unit that came from it, and unlink the
    user's items still pointing at one of `replacing` (the units an ingestion re-derived) that `links` no longer
    names. Only the user's own items and memory units: a link to another user's unit is not made. Returns the
    items linked."""
    if replacing:
        await db.execute(
            "UPDATE media_items SET memory_unit_id = NULL "
            "WHERE user_id = $1 AND memory_unit_id = ANY($2::text[]) AND NOT (media_id = ANY($3::text[]))",
            user_id,
            list(replacing),
            list(links),
        )
    if not links:
        return 0
    status = await db.execute(
        "UPDATE media_items m SET memory_unit_id = link.muid "
        "FROM unnest($2::text[], $3::text[]) AS link(media_id, muid) "
        "JOIN memory_units u ON u.muid = link.muid AND u.user_id = $1 "
        "WHERE m.media_id = link.media_id AND m.user_id = $1",
        user_id,
        list(links),
        list(links.values()),
    )
    return row_count(status)


async def waiting_media_ids(db: Executor, *, limit: int) -> list[str]:
    """Items of every user still to read (`pending`, or `processing` by a run that may have been lost), oldest
    first: the media sweep enqueues their jobs. A sweep, hence without a user id."""
    rows = await db.fetch(
        "SELECT media_id FROM public.media_items WHERE processing_status IN ('pending', 'processing') "
        "ORDER BY created_at, media_id LIMIT $1",
        limit,
    )
    return [row["media_id"] for row in rows]
