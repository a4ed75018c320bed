"""A conversation's attachments as the ingestion prompt shows them, within the input budget, and the check of the
attachment handles an answer cites.

Why handles: the model sees each attachment as "a1", "a2", … (never a media id) and may name the one a memory unit
comes from; the handle is checked like every handle (agents/handles.py) and resolved to the media id by the merge, so
the write can link the unit to its attachment (media_items.memory_unit_id). An attachment that could not be read
(still processing when ingestion stopped waiting, or failed) is shown too, saying so: the model knows something was
attached, and a message about it ("here is my watch") can still be linked to it.

The texts share at most SHARE of the window's token budget, cut evenly (a long document does not crowd out a photo's
description); the rest of the budget is the conversation's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.handles import Listing
from agents.ingestion.inputs import Attachment
from agents.ingestion.schema import IngestionOutput
from agents.llm import estimate_tokens

SHARE = 1 / 3
"""The most of a window's token budget attachments' texts take."""
WRAPPER_TOKENS = 30
"""An attachment's tag and its description line."""
KIND = "a"
NAME_CHARS = 200
"""The most of an uploader's file name the prompt shows."""


def attachment_views(attachments: Sequence[Attachment], token_budget: int) -> list[dict[str, Any]]:
    """The attachments as the prompt's `attachments` variable: handle, kind, message, name, text (cut to its share of
    the budget, "[…]" marking a cut) or why it is unread."""
    if not attachments:
        return []
    readable = [a for a in attachments if a.text]
    allowance = int(token_budget * SHARE) - WRAPPER_TOKENS * len(attachments)
    per_text_chars = max(200, allowance * 4 // max(1, len(readable)))
    views = []
    for number, attachment in enumerate(attachments, start=1):
        text = attachment.text.strip() if attachment.text else None
        if text is not None and len(text) > per_text_chars:
            text = text[: per_text_chars - 3].rstrip() + " […]"
        views.append(
            {
                "handle": f"{KIND}{number}",
                "kind": attachment.kind,
                "message": attachment.message,
                "name": (attachment.filename or "(unnamed)")[:NAME_CHARS],
                "text": text,
                "unread": None if text else attachment.unread or "nothing was read from it",
            }
        )
    return views


def views_tokens(views: Sequence[dict[str, Any]]) -> int:
    """What the attachments block costs in the prompt (estimated), to leave the rest of the budget to the messages."""
    return sum(WRAPPER_TOKENS + estimate_tokens((view["text"] or view["unread"]) + view["name"]) for view in views)


def check_attachments(output: IngestionOutput, count: int) -> list[str]:
    """Problems worded for the repair request: a memory unit citing an attachment handle it was not shown."""
    listing = Listing({KIND: count})
    problems = []
    for i, unit in enumerate(output.memory_units):
        if unit.attachment is not None:
            problem = listing.problem(f"memory_units[{i}].attachment", unit.attachment, KIND)
            if problem:
                problems.append(problem)
    return problems
