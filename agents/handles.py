"""Handles: how an agent names the rows it shows the model ("m2", "c5", "k1"), and the one way an answer's handle is
read back.

Why one function for every agent: an answer is hostile input, and each agent reading handles its own way let "m²"
(which `str.isdigit` accepts and `int` refuses), "m1\\n" (which a `$` regex accepts) and "m" followed by 5000 digits
(over Python's limit for `int`) crash a check instead of going back to the model. A handle is one kind letter and a
number of at most MAX_DIGITS ASCII digits with no sign, space, leading zero or trailing newline, matched whole
(`re.fullmatch`), so reading one never raises and a handle has exactly one spelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_DIGITS = 6
"""No agent shows the model a million items of one kind; a longer number is not a handle."""

_HANDLE = re.compile(rf"([a-z])([1-9][0-9]{{0,{MAX_DIGITS - 1}}})", re.ASCII)


@dataclass(frozen=True)
class Handle:
    """A parsed handle: `kind` is its letter, `number` counts from 1 (the n-th item of that kind shown)."""

    kind: str
    number: int

    @property
    def index(self) -> int:
        """Where the item is in the list the handles were numbered from."""
        return self.number - 1

    def __str__(self) -> str:
        return f"{self.kind}{self.number}"


def handle_pattern(kinds: str) -> str:
    """The schema `pattern` of a handle of `kinds`, for pydantic to refuse a malformed one before any check runs
    (its default regex engine matches `$` only at the very end of the text, as `re.fullmatch` does)."""
    letter = kinds if len(kinds) == 1 else f"[{kinds}]"
    return rf"^{letter}[1-9][0-9]{{0,{MAX_DIGITS - 1}}}$"


def parse_handle(text: str, kinds: str) -> Handle | None:
    """The handle `text` spells, when it is one of a kind in `kinds` (letters); otherwise None. Never raises."""
    match = _HANDLE.fullmatch(text)
    if match is None or match[1] not in kinds:
        return None
    return Handle(match[1], int(match[2]))


@dataclass(frozen=True)
class Listing:
    """How many items of each kind (a letter) the model was shown: handles <kind>1..<kind><count>."""

    counts: Mapping[str, int]

    def resolve(self, text: str, kinds: str) -> Handle | None:
        """The handle `text` names when it is of one of `kinds` and was shown; otherwise None."""
        handle = parse_handle(text, kinds)
        if handle is None or handle.number > self.counts.get(handle.kind, 0):
            return None
        return handle

    def problem(self, where: str, text: str, kinds: str) -> str | None:
        """What is wrong with `text` as a handle of one of `kinds`, worded for the model's repair request; None when
        it names an item that was shown."""
        handle = parse_handle(text, kinds)
        if handle is None:
            return f"{where}: {quoted(text)} is not a handle of the kind expected here ({'/'.join(kinds)})"
        if handle.number > self.counts.get(handle.kind, 0):
            return f"{where}: {quoted(text)} was not shown to you (you were shown {self.shown(handle.kind)})"
        return None

    def shown(self, kind: str) -> str:
        """The handles of `kind` that were shown, as the model is told: "m1..m4", or "none"."""
        most = self.counts.get(kind, 0)
        return f"{kind}1..{kind}{most}" if most else "none"


QUOTED_CHARS = 40
"""A problem quotes at most this much of what the model wrote: a runaway "handle" must not fill the repair."""


def quoted(text: str) -> str:
    """`text` as a problem quotes it: repr, cut to QUOTED_CHARS."""
    return repr(text) if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS]!r}… ({len(text)} characters)"
