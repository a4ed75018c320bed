"""MediaAgent: an attachment's bytes in, its text out (a description, a transcript or the document's text). Pure but
for the model calls it makes through its ports: no SQL, no queue, no fetching (the job hands it the bytes).

One model call at most per attachment: an image is described by a vision-capable chat model (the image sent as a
base64 data URL in an image content part), audio is transcribed by the transcription endpoint, a document's text is
extracted here without any model. The type is read from the bytes first (types.py), so nothing is sent that the
model cannot read.

The user's language: an image's description is written in the language the user reads (its <language> block first
in the user message, as in every agent's prompt), while the text visible in it is copied as written; a transcript
stays in the language spoken, the endpoint told which one the user speaks when it is known.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Protocol

from pydantic import BaseModel

from agents.llm import AudioFile, CallContext, StructuredLLM, Transcriber
from agents.media.documents import document_text
from agents.media.schema import ImageReading, check_image_reading
from agents.media.types import FORMATS, detect_type
from core.language import ENGLISH, Language
from core.media import MediaKind, MediaReading, ReadingMethod
from core.vocabulary import storable_text
from prompts import load_prompt
from settings import Settings

AGENT_NAME = "media"
IMAGE_PROMPT = "media_image"
TRANSCRIPTION_PROMPT = "media_transcription"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_CHARS = 200
"""The most of an uploader's file name a prompt shows (the web app's column has no limit)."""


class MediaLLM(StructuredLLM, Transcriber, Protocol):
    """Both ports of the LLM layer (agents.llm.LLMClient is one): chat for images, transcription for audio."""


class MediaInput(BaseModel):
    """The item being read, as the agent needs it (the job reads it from media_items and the owner's row)."""

    media_id: str
    user_id: str
    kind: MediaKind
    filename: str | None = None
    language: Language = ENGLISH
    """What the user reads (core/language.py): an image's description is written in it."""
    speech_code: str | None = None
    """The ISO 639-1 code of the language the user speaks, when known (LanguageChoice.speech_code): the
    transcription's hint. A transcript stays in the language spoken; it is never translated."""


class MediaAgent:
    def __init__(
        self,
        llm: MediaLLM,
        *,
        vision_model: str,
        transcription_model: str,
        max_text_chars: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._llm = llm
        self._vision_model = vision_model
        self._transcription_model = transcription_model
        self._max_chars = max_text_chars
        self._clock = clock

    @classmethod
    def from_settings(cls, llm: MediaLLM, settings: Settings) -> MediaAgent:
        return cls(
            llm,
            vision_model=settings.media_vision_model,
            transcription_model=settings.media_transcription_model,
            max_text_chars=settings.media_max_text_chars,
        )

    async def read(self, item: MediaInput, data: bytes, *, job_id: str | None = None) -> MediaReading:
        """The attachment's text. Raises MediaReadError when the file itself cannot be read (wrong type, damaged,
        no text), and what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        mime = detect_type(data, item.kind, filename=item.filename)
        context = CallContext(user_id=item.user_id, agent=AGENT_NAME, job_id=job_id)
        pages: int | None = None
        model: str | None = None
        if item.kind is MediaKind.IMAGE:
            text, method = await self._describe(item, data, mime, context), ReadingMethod.VISION
            model = self._vision_model
        elif item.kind is MediaKind.AUDIO:
            text, method = await self._transcribe(item, data, mime, context), ReadingMethod.TRANSCRIPTION
            model = self._transcription_model
        else:
            text, pages = document_text(data, mime, max_chars=self._max_chars)
            method = ReadingMethod.PDF if mime == "application/pdf" else ReadingMethod.TEXT
        text = storable_text(text).strip()  # a transcript is not validated: no NUL or lone surrogate may reach jsonb
        return MediaReading(
            text=text[: self._max_chars],
            method=method,
            model=model,
            truncated=len(text) > self._max_chars,
            detected_type=mime,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            pages=pages,
            at=self._clock().astimezone(UTC).isoformat(),
        )

    async def _describe(self, item: MediaInput, data: bytes, mime: str, context: CallContext) -> str:
        name = (item.filename or "(unnamed)")[:NAME_CHARS]
        prompt = load_prompt(IMAGE_PROMPT).render(
            language=item.language.instruction, filename=name, max_chars=self._max_chars
        )
        image = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        answer = await self._llm.complete(
            prompt.with_images(image),
            ImageReading,
            model=self._vision_model,
            context=context,
            check=lambda output: check_image_reading(output, self._max_chars),
        )
        return image_text(answer.value)

    async def _transcribe(self, item: MediaInput, data: bytes, mime: str, context: CallContext) -> str:
        prompt = load_prompt(TRANSCRIPTION_PROMPT).render()
        audio = AudioFile(data, audio_filename(item.filename, mime), mime)
        transcript = await self._llm.transcribe(
            audio, prompt=prompt, model=self._transcription_model, context=context, language=item.speech_code
        )
        return transcript.text


def image_text(reading: ImageReading) -> str:
    """The description, then the text written in the image as a quotation ("> " before each line), never under a
    label: the description is in the user's language, the quoted text as written, and an English "Text in the image:"
    between them was the one word of a Portuguese user's reading not in Portuguese."""
    visible = reading.visible_text.strip() if reading.visible_text else ""
    if not visible:
        return reading.description
    quoted = "\n".join(f"> {line}".rstrip() for line in visible.splitlines())
    return f"{reading.description.strip()}\n\n{quoted}"


def audio_filename(filename: str | None, mime: str) -> str:
    """The name the audio is sent under: the uploader's name, made safe, with the extension of the format its bytes
    are (transcription endpoints tell the format by the extension)."""
    extension = next(ext for ext, known in FORMATS[MediaKind.AUDIO].items() if known == mime)
    stem = _UNSAFE.sub("-", PurePosixPath(filename or "audio").stem).strip("-.")[:60] or "audio"
    return f"{stem}{extension}"
