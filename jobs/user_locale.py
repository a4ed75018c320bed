"""A user's language and time zone as the jobs use them, with the warning a bad stored value deserves.

The web app writes `users.language_preference` and `users.timezone`; a value Orrery cannot use is English or UTC
(core/language.py, core/local_time.py decide), never a failed job. The warning is one log line: for a language, once
per job that writes for the user; for a time zone, which the hourly schedules read on every tick, once per user and
value per process (`_warned_zones`), so a bad zone does not fill the log every hour.
"""

from __future__ import annotations

from datetime import tzinfo

from structlog.typing import FilteringBoundLogger

from core.language import Language, LanguageChoice, user_language
from core.local_time import user_zone

_warned_zones: set[tuple[str, str | None]] = set()


def language_for(log: FilteringBoundLogger, user_id: str, preference: str | None) -> Language:
    """The language the user reads; a preference that names none is English and one warning."""
    return language_choice_for(log, user_id, preference).language


def language_choice_for(log: FilteringBoundLogger, user_id: str, preference: str | None) -> LanguageChoice:
    """language_for with whether the preference named it (the media job hints a transcription only then)."""
    choice = user_language(preference)
    if choice.problem is not None:
        log.warning("user.language_unusable", user_id=user_id, problem=choice.problem)
    return choice


def zone_for(log: FilteringBoundLogger, user_id: str, name: str | None) -> tzinfo:
    """The zone the user lives in; a name that is no IANA zone is UTC and one warning per user and value."""
    choice = user_zone(name)
    if choice.problem is not None and (user_id, name) not in _warned_zones:
        _warned_zones.add((user_id, name))
        log.warning("user.timezone_unusable", user_id=user_id, problem=choice.problem)
    return choice.zone
