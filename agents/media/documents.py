"""The text of a document attachment: PDF pages through pypdf, UTF-8 text as it is.

Why pypdf: pure Python (no system library in the worker image), kept up, and it extracts the text layer of the PDFs
people attach (exports from word processors, forms, receipts). A scanned PDF has no text layer and fails as
`unreadable`: reading it would be an OCR or vision call per page, which this agent does not spend. Other office
formats (DOCX, ODT, RTF, HTML) are refused by type: each is another parser dependency; a web app that wants them
can convert uploads to PDF.

Bounded against hostile files: at most `max_pages` pages are read and extraction stops once `max_chars` are
collected, so a PDF of ten thousand pages costs what its first pages cost.
"""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from core.media import FailureCode, MediaReadError

MAX_PAGES = 200


def document_text(data: bytes, mime: str, *, max_chars: int, max_pages: int = MAX_PAGES) -> tuple[str, int | None]:
    """(the text, the pages read: None for a text file); MediaReadError(UNREADABLE) for a damaged PDF or a
    document without any text."""
    if mime == "application/pdf":
        text, pages = _pdf_text(data, max_chars=max_chars, max_pages=max_pages)
    else:
        text, pages = data.decode("utf-8-sig", errors="replace"), None
    text = text.replace("\x00", "").strip()
    if not text:
        raise MediaReadError(
            FailureCode.UNREADABLE,
            "the document holds no text (a scanned PDF has only images of its pages, which are not read)",
        )
    return text, pages


def _pdf_text(data: bytes, *, max_chars: int, max_pages: int) -> tuple[str, int]:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about sloppy PDFs are not ours to show
    texts: list[str] = []
    collected = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise MediaReadError(FailureCode.UNREADABLE, "the PDF is password-protected; it cannot be read")
        read = 0
        for page in reader.pages[:max_pages]:
            text = page.extract_text() or ""
            read += 1
            texts.append(text)
            collected += len(text)
            if collected > max_chars:
                break
    except MediaReadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise MediaReadError(FailureCode.UNREADABLE, f"the PDF is damaged: {type(exc).__name__}: {exc}"[:300]) from None
    return "\n\n".join(texts), read
