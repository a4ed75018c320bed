"""What an attachment is, read from its bytes: the one type check before anything is sent anywhere.

Why the bytes and not the name, the row's `mime_type` or the server's Content-Type: all three are whatever the
uploader said, and a PDF named `photo.png` sent to a vision model as an image fails there, after a paid call.
puremagic reads the file's signature; each kind accepts the formats its reader takes (the vision and transcription
endpoints' documented formats, and PDF or UTF-8 text for documents). A file of another type is one clear failure.
"""

from __future__ import annotations

import puremagic

from core.media import FailureCode, MediaKind, MediaReadError

SNIFF_BYTES = 8192
"""puremagic reads signatures near the start; the rest of a file does not change what it is."""

FORMATS: dict[MediaKind, dict[str, str]] = {
    MediaKind.IMAGE: {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"},
    MediaKind.AUDIO: {
        ".wav": "audio/wav",
        ".mp3": "audio/mpeg",
        ".mpga": "audio/mpeg",
        ".m4a": "audio/mp4",
        ".ogg": "audio/ogg",
        ".oga": "audio/ogg",
        ".webm": "audio/webm",
        ".flac": "audio/flac",
    },
    MediaKind.DOCUMENT: {".pdf": "application/pdf"},
}
"""By kind: the file extensions puremagic names (of the formats the kind's reader takes) and the MIME type each is
read as. Documents also take text without a signature (`text/plain`, `text/markdown`)."""

MARKDOWN = (".md", ".markdown")


def detect_type(data: bytes, kind: MediaKind, *, filename: str | None) -> str:
    """The MIME type `data` is read as for an item of `kind`; MediaReadError(WRONG_TYPE) when it is none of the
    kind's formats. A signature-less document is text when it decodes as UTF-8 (Markdown by its name)."""
    accepted = FORMATS[kind]
    found = _signatures(data[:SNIFF_BYTES])
    for extension in found:
        if extension in accepted:
            return accepted[extension]
    if kind is MediaKind.DOCUMENT and not found and _is_text(data):
        return "text/markdown" if (filename or "").lower().endswith(MARKDOWN) else "text/plain"
    what = f"a {found[0].lstrip('.')} file" if found else "of no type Orrery reads"
    formats = ", ".join(sorted({mime for mime in accepted.values()}))
    if kind is MediaKind.DOCUMENT:
        formats += ", text/plain, text/markdown (UTF-8)"
    article = "an" if kind.value[0] in "aeiou" else "a"
    raise MediaReadError(
        FailureCode.WRONG_TYPE, f"the {kind.value} is {what}; {article} {kind.value} is read from {formats}"
    )


def _signatures(head: bytes) -> list[str]:
    """The file extensions puremagic's signatures match, most confident first (empty when none matches)."""
    if not head:
        return []
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return []
    return [match.extension.lower() for match in matches if match.extension]


def _is_text(data: bytes) -> bool:
    if not data or b"\x00" in data:
        return False
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True
