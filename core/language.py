"""The language a user reads: `users.language_preference` (a BCP-47 tag the web app writes) made into the one line
every agent that writes user-facing text puts in its prompt.

Pure: the tag is parsed and named by langcodes (with its language-data), never by a table of our own; a value it
cannot name (empty, malformed, an unregistered language) is English, and the caller logs the `problem` once. The
name, not the raw tag, is what reaches a prompt, so the stored text never does: a hostile preference cannot become
an instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_TAG_CHARS = 35
"""RFC 5646 recommends room for 35 characters; a longer value is not a tag."""


@dataclass(frozen=True)
class Language:
    """A language the user reads: its normalized tag ("pt-PT") and its English name ("Portuguese (Portugal)")."""

    tag: str
    name: str

    @property
    def instruction(self) -> str:
        """What a prompt says about it (inside its <language> block, the first thing the user's data holds)."""
        return f"{self.name} [{self.tag}]"


ENGLISH = Language("en", "English")
"""The language of a user whose preference is unset or unknown."""


@dataclass(frozen=True)
class LanguageChoice:
    """The language to write in and, when the preference could not be used, why (one line for the log)."""

    language: Language
    problem: str | None = None

    @property
    def speech_code(self) -> str | None:
        """The ISO 639-1 code of the language ("pt" of "pt-PT"), the hint a transcription endpoint takes about what
        the audio is in; None when the preference could not be used (English is then what is written, not what the
        user is known to speak) or the language has no two-letter code."""
        primary = self.language.tag.split("-", 1)[0].lower()
        if self.problem is not None or len(primary) != 2 or not primary.isascii() or not primary.isalpha():
            return None
        return primary


def user_language(preference: str | None) -> LanguageChoice:
    """The language of `users.language_preference`: "pt-PT", "pt", "es", "pt_BR" (normalized), else English with the
    reason (empty, not a BCP-47 tag, or a language no registry names). langcodes is imported here, not at the top:
    its tables take a quarter of a second, which listing jobs or probing health need not pay."""
    import langcodes
    from langcodes.tag_parser import LanguageTagError

    raw = (preference or "").strip()
    if not raw:
        return LanguageChoice(ENGLISH, "no language preference set; writing English")
    shown = raw[:MAX_TAG_CHARS] + ("…" if len(raw) > MAX_TAG_CHARS else "")
    if len(raw) > MAX_TAG_CHARS:
        return LanguageChoice(ENGLISH, f"language preference {shown!r} is not a BCP-47 tag; writing English")
    try:
        parsed = langcodes.Language.get(raw)
    except (LanguageTagError, ValueError):
        return LanguageChoice(ENGLISH, f"language preference {shown!r} is not a BCP-47 tag; writing English")
    name = parsed.display_name("en")
    if parsed.language in (None, "und") or not parsed.is_valid() or "Unknown" in name:  # langcodes' word for it
        return LanguageChoice(ENGLISH, f"language preference {shown!r} names no known language; writing English")
    return LanguageChoice(Language(parsed.to_tag(), name))
