"""Sample answers that name what they cite, resolved to the handles of the request they answer.

Why: agents show the model numbered handles ("m3", "c4", "k2"), numbered in an order that depends on the data
(importance, mentions, salience, what else the user said). A sample answer written with fixed handles silently cites
the wrong items as soon as that order changes: adding one conversation to the sample user once made the scripted
insight merge "Morning runs" into "Dona Graça". So a sample may write `"@c:Running"` instead of `"c4"`, and the
scripted server answers with the handle the request listed for it.

A reference is `@<kind>:<text>`; it resolves to the first listed line `<kind><number>. …` whose item starts with
`<text>` (a memory's or insight's title, a concept's name, a topic) or, for a community line ("k2. 4 concepts: A, B"),
names `<text>` among its members. An unresolved reference inside a list is left out (the item is not in this
request); anywhere else it stays as written, so the agent's handle check reports it like any unknown handle.
"""

from __future__ import annotations

import re
from typing import Any

REFERENCE = re.compile(r"^@([a-z]):(.+)$", re.DOTALL)


def resolve_references(answer: Any, request_text: str) -> Any:
    """`answer` with every `@<kind>:<text>` string replaced by the handle `request_text` lists for it."""
    if isinstance(answer, dict):
        return {key: resolve_references(value, request_text) for key, value in answer.items()}
    if isinstance(answer, list):
        resolved = [resolve_references(item, request_text) for item in answer]
        return [new for old, new in zip(answer, resolved, strict=True) if not (_is_reference(old) and new == old)]
    if _is_reference(answer):
        kind, text = REFERENCE.match(answer).groups()  # type: ignore[union-attr]
        return handle_for(kind, text, request_text) or answer
    return answer


def handle_for(kind: str, text: str, request_text: str) -> str | None:
    """The handle (`c4`) of the first `kind` line in `request_text` whose item is `text`; None when none is."""
    name = re.escape(text)
    line = re.compile(
        rf"^\s*({kind}\d+)\. "
        rf"(?:\[[^\]\n]*\] )?"  # an insight memory's [date, importance]
        rf"(?:\d+ concepts: (?:[^\n]*?, )?)?"  # a community's members, the wanted one anywhere among them
        rf"{name}(?= \(|:|,|$)",
        re.MULTILINE,
    )
    found = line.search(request_text)
    return found.group(1) if found else None


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and REFERENCE.match(value) is not None


SHOWN = "@shown:"
_LISTED = re.compile(r"^\s*([a-z]?[1-9][0-9]*)\. (.*)$", re.MULTILINE)


def resolve_shown(answer: Any, text: str) -> Any:
    """`answer` with every `"@shown:TEXT"` string replaced by the handle of the first listed line of `text` holding
    TEXT anywhere (an integer for a numbered line, "p2" for a lettered one), or None when no listed line does: for
    answers whose field takes null when the model names nothing (ingestion's earlier memory and existing concept)."""
    if isinstance(answer, dict):
        return {key: resolve_shown(value, text) for key, value in answer.items()}
    if isinstance(answer, list):
        return [resolve_shown(value, text) for value in answer]
    if isinstance(answer, str) and answer.startswith(SHOWN):
        wanted = answer.removeprefix(SHOWN)
        for handle, line in _LISTED.findall(text):
            if wanted in line:
                return int(handle) if handle.isdigit() else handle
        return None
    return answer
