"""What the model answers about a batch of the user's interactions, and the checks pydantic cannot make.

The model sees interactions as "i1".., memories as "m1".. and concepts as "c1".., never ids; every handle is checked
against what it was shown, as is what each action needs, and a problem goes back to it in the one repair request.
"""

from __future__ import annotations

from pydantic import Field

from agents.answer_limits import text_problem
from agents.handles import Listing, handle_pattern, parse_handle
from core.corrections import CorrectionAction
from core.vocabulary import StorableModel

TITLE_CHARS = 200
TEXT_CHARS = 4000
REASON_CHARS = 1000


class Decision(StorableModel):
    interaction: str = Field(pattern=handle_pattern("i"), description='The interaction decided: "i1"')
    action: CorrectionAction
    target: str | None = Field(
        pattern=handle_pattern("mc"), description='The memory ("m2") or concept ("c1") it changes, or null'
    )
    title: str | None = Field(description="revise_memory / add_memory: the memory's title, or null to keep it")
    content: str | None = Field(description="revise_memory / add_memory: the memory's whole text, or null")
    importance: float | None = Field(ge=1, le=10, description="revise_memory / add_memory: 1..10, or null")
    description: str | None = Field(description="revise_concept: the concept's whole new description, or null")
    reason: str = Field(description="One sentence: why, in the user's terms")


class CorrectionsOutput(StorableModel):
    decisions: list[Decision]


TARGET_KIND = {
    CorrectionAction.REVISE_MEMORY: "m",
    CorrectionAction.FORGET_MEMORY: "m",
    CorrectionAction.REVISE_CONCEPT: "c",
}
"""The kind of target each action changes; add_memory and none take none."""


def check_decisions(output: CorrectionsOutput, shown: Listing) -> list[str]:
    """Unknown handles, an interaction decided twice, a target of the wrong kind, an action without what it needs,
    blank or overlong texts. `shown` counts the interactions (i), memories (m) and concepts (c) listed."""
    problems: list[str] = []
    decided: dict[str, int] = {}
    for n, decision in enumerate(output.decisions):
        where = f"decisions[{n}]"
        if problem := shown.problem(f"{where}.interaction", decision.interaction, "i"):
            problems.append(problem)
        elif decision.interaction in decided:
            problems.append(f"{where}: {decision.interaction} is decided twice; give one decision per interaction")
        decided.setdefault(decision.interaction, n)
        problems += _target_problems(where, decision, shown)
        problems += _value_problems(where, decision)
    return problems


def _target_problems(where: str, decision: Decision, shown: Listing) -> list[str]:
    kind = TARGET_KIND.get(decision.action)
    if kind is None:  # a target is not needed; one given must still be one that was shown
        problem = shown.problem(f"{where}.target", decision.target, "mc") if decision.target else None
        return [problem] if problem else []
    if decision.target is None:
        return [f"{where}.target: {decision.action.value} needs the handle of the {_noun(kind)} it changes"]
    handle = parse_handle(decision.target, "mc")
    if handle is not None and handle.kind != kind:
        return [f"{where}.target: {decision.action.value} changes a {_noun(kind)}, not {decision.target}"]
    problem = shown.problem(f"{where}.target", decision.target, kind)
    return [problem] if problem else []


def _value_problems(where: str, decision: Decision) -> list[str]:
    problems = [
        found
        for found in (
            text_problem(f"{where}.title", decision.title, TITLE_CHARS, required=True),
            text_problem(f"{where}.content", decision.content, TEXT_CHARS, required=True),
            text_problem(f"{where}.description", decision.description, TEXT_CHARS, required=True),
            text_problem(f"{where}.reason", decision.reason, REASON_CHARS),
        )
        if found
    ]
    action = decision.action
    if action is CorrectionAction.REVISE_MEMORY and (decision.title, decision.content, decision.importance) == (
        None,
        None,
        None,
    ):
        problems.append(f"{where}: revise_memory needs a new title, content or importance")
    if action is CorrectionAction.REVISE_CONCEPT and decision.description is None:
        problems.append(f"{where}.description: revise_concept needs the concept's new description")
    if action is CorrectionAction.ADD_MEMORY and None in (decision.title, decision.content, decision.importance):
        problems.append(f"{where}: add_memory needs a title, content and importance")
    return problems


def _noun(kind: str) -> str:
    return "memory" if kind == "m" else "concept"
