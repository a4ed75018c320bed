"""The user's corrections (issue 19, item 5): the interaction_logs rows Orrery reads, and what one LLM call per user
batch decides for each (agents/corrections), which store/corrections_writes.py applies as revisions.

The web app writes the rows (docs/contract.md, "The user's corrections"); these types are shared by the agent that
decides and the store that applies, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.vocabulary import StorableModel


class InteractionType(StrEnum):
    """The interaction_logs.interaction_type values the corrections job reads; others are the web app's alone."""

    CORRECTION = "correction"
    """The user says a memory or a concept is wrong (content_text: in their words); target: the memory unit or
    concept."""
    CARD_FEEDBACK = "card_feedback"
    """Feedback on a card (content_structured: CardFeedback; content_text: an optional comment); target: the card."""
    REFLECTION = "reflection"
    """Something the user wants remembered (content_text); target: the memory unit or concept it is about, or none."""


class Verdict(StrEnum):
    ACCURATE = "accurate"
    INACCURATE = "inaccurate"
    NOT_ME = "not_me"
    """The memory is not about the user, or should not be kept."""


class CardFeedback(StorableModel):
    """interaction_logs.content_structured of a `card_feedback` row."""

    verdict: Verdict


class CorrectionAction(StrEnum):
    REVISE_MEMORY = "revise_memory"
    FORGET_MEMORY = "forget_memory"
    REVISE_CONCEPT = "revise_concept"
    ADD_MEMORY = "add_memory"
    NONE = "none"


CORRECTION_TYPES = tuple(kind.value for kind in InteractionType)
CARD_TARGET = "Card"
"""interaction_logs.target_entity_type of a card (its target_entity_id is the card's id)."""


@dataclass(frozen=True)
class CorrectionDecision:
    """What to do about one interaction, its handles resolved to ids. `target_id` is the memory unit or concept to
    revise or forget; the fields a revision sets are those not None."""

    interaction_id: str
    action: CorrectionAction
    reason: str
    target_id: str | None = None
    title: str | None = None
    content: str | None = None
    importance: float | None = None
    description: str | None = None
