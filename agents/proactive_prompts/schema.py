"""What the model answers, and the checks pydantic cannot make (references to what it was shown, sizes).

The model sees memories, insights and topics as handles ("m2", "i1", "t3"), never ids; every handle it cites is
checked against what it was shown, and an unknown one goes back to it in the one repair request.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from agents.answer_limits import text_problem
from agents.handles import Listing
from core.vocabulary import StorableModel

PROMPT_CHARS = 500
"""Longest prompt text: a question or nudge the companion says in one breath."""
RATIONALE_CHARS = 1000


class Timing(StrEnum):
    NEXT_CONVERSATION = "next_conversation"
    WITHIN_DAYS = "within_days"
    NEXT_WEEK = "next_week"


class ProposedPrompt(StorableModel):
    prompt_text: str = Field(description="What the companion says or asks, addressed to the user")
    priority: int = Field(ge=1, le=10, description="10 = most worth bringing up")
    rationale: str = Field(description="One sentence: why now")
    suggested_timing: Timing
    sources: list[str] = Field(description='Handles it rests on: "m2", "i1", "t3"')


class ProactivePromptsOutput(StorableModel):
    prompts: list[ProposedPrompt]


SOURCE_KINDS = "mit"
"""The handles a prompt may rest on: memories, insights, topics."""


def check_prompts(output: ProactivePromptsOutput, shown: Listing) -> list[str]:
    """Unknown handles, blank or overlong texts. `shown` holds how many of each kind were listed (m, i, t).

    More prompts than asked for, or one that repeats a pending prompt, is not sent back: the writer keeps the best
    ones that fit and drops repeats, which costs no second call."""
    problems: list[str] = []
    for i, prompt in enumerate(output.prompts):
        where = f"prompts[{i}]"
        for found in (
            text_problem(f"{where}.prompt_text", prompt.prompt_text, PROMPT_CHARS, required=True),
            text_problem(f"{where}.rationale", prompt.rationale, RATIONALE_CHARS),
        ):
            if found:
                problems.append(found)
        for j, handle in enumerate(prompt.sources):
            if found := shown.problem(f"{where}.sources[{j}]", handle, SOURCE_KINDS):
                problems.append(found)
    return problems
