"""What the media agent hands to the store, and what the web app reads back: an attachment's reading or its failure.

Both sides share these records: agents/media builds a MediaReading (or the job a MediaFailure), store/repos/
media_items.py writes it into `media_items.metadata` with the status, and clients/contract.py documents the shapes
(docs/contract.md, "Attachments"). `media_items.processing_status` moves pending → processing → processed | failed.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class MediaKind(StrEnum):
    """`media_items.type`, as the seed lists it."""

    IMAGE = "image"
    AUDIO = "audio"
    DOCUMENT = "document"


class MediaStatus(StrEnum):
    """`media_items.processing_status`: the web app writes `pending`, Orrery the rest."""

    PENDING = "pending"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class ReadingMethod(StrEnum):
    """How an attachment became text."""

    VISION = "vision"  # a vision-capable chat model described the image
    TRANSCRIPTION = "transcription"  # an OpenAI-compatible transcription endpoint transcribed the audio
    PDF = "pdf"  # pypdf extracted the text of the PDF's pages
    TEXT = "text"  # a plain-text or Markdown file, read as it is


class FailureCode(StrEnum):
    """Why an attachment could not be read; the reason says it in words."""

    MISSING = "missing"  # no file at the URL (a 404, no such file)
    TOO_LARGE = "too_large"  # over ORRERY_MEDIA_MAX_BYTES
    WRONG_TYPE = "wrong_type"  # its bytes are not a type its kind accepts
    UNREADABLE = "unreadable"  # a damaged file, or one with no text in it
    REFUSED_URL = "refused_url"  # a URL scheme, host or path Orrery does not fetch from
    UNAVAILABLE = "unavailable"  # the storage or the model kept failing until the job gave up


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MediaReading(_Shape):
    """`media_items.metadata.reading`, set with status `processed`: what was read from the attachment."""

    text: str = Field(description="The description, transcript or document text, at most ORRERY_MEDIA_MAX_TEXT_CHARS")
    method: ReadingMethod
    model: str | None = Field(description="The model that read it (vision, transcription); null for documents")
    truncated: bool = Field(description="Whether the text was cut to ORRERY_MEDIA_MAX_TEXT_CHARS")
    detected_type: str = Field(description="The MIME type found in the file's bytes (what was read)")
    size_bytes: int = Field(ge=0, description="The bytes fetched")
    sha256: str = Field(description="Hex digest of the bytes fetched")
    pages: int | None = Field(description="Pages of a PDF read (null otherwise)")
    at: str = Field(description="ISO 8601 with offset (UTC)")


class MediaFailure(_Shape):
    """`media_items.metadata.failure`, set with status `failed`; a rerun with `reprocess` may read it again."""

    code: FailureCode
    reason: str = Field(description="One line: what is wrong with the file and what to do")
    at: str = Field(description="ISO 8601 with offset (UTC)")


class MediaReadError(Exception):
    """The attachment itself cannot be read (missing, too large, of the wrong type, damaged): one clear failure on
    the item, recorded by the job, never retried. A failing storage or model raises TransientError instead."""

    def __init__(self, code: FailureCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
