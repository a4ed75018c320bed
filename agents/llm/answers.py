"""Judging a model's answer and asking for its repair: parse, validate (pydantic plus the agent's check), and when
it is unusable, the repair request that sends the problems back once.

An answer is untrusted data: `judge` never raises, whatever it holds. Unusable JSON is a problem for the model; a
check or validator that raises (a defect in the agent, not the answer) is a CHECK_FAILED judgement, so the call is
recorded either way and the job fails with a clear message instead of a stray exception. The repair request is
bounded: what it repeats of the answer and how many problems it lists, each cut short.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agents.llm.policy import short
from agents.llm.wire import Reply
from core.llm_records import CallOutcome
from core.validation import error_lines
from prompts import load_prompt

T = TypeVar("T", bound=BaseModel)

MAX_ERRORS_IN_REPAIR = 20
"""Problems listed in a repair request (the rest are counted); each is cut to MAX_ERROR_TEXT characters."""
MAX_ECHOED_ANSWER_CHARS = 16_000
"""How much of a rejected answer the repair request repeats to the model (about 4,000 tokens, over twice the largest
sample answer): enough to fix a reference in a real answer, while a runaway one (366,803 characters once) is not paid
for twice. The model is told when its answer was cut, and answers in full again either way."""

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


def _strip_code_fence(text: str) -> str:
    """Local models in plain-instruction mode often wrap JSON in ```json fences; the JSON inside is what counts."""
    match = _FENCE.match(text)
    return match.group("body") if match else text.strip()


@dataclass(frozen=True)
class Judgement:
    """What one answer is worth: its outcome, the problems for the repair request, and the value when it is good."""

    outcome: CallOutcome
    errors: list[str]
    value: BaseModel | None = None
    crash: Exception | None = None
    """What a check (or a validator) raised instead of returning problems: the outcome is then CHECK_FAILED."""


def repair_messages(answer: str, errors: Sequence[str]) -> list[dict[str, str]]:
    """The rejected answer (at most MAX_ECHOED_ANSWER_CHARS of it) and the repair request listing its problems (at
    most MAX_ERRORS_IN_REPAIR, each cut to MAX_ERROR_TEXT), to follow the conversation so far."""
    cut = len(answer) > MAX_ECHOED_ANSWER_CHARS
    repair = load_prompt("llm_repair").render(
        errors=[short(error) for error in errors[:MAX_ERRORS_IN_REPAIR]],
        more_errors=max(0, len(errors) - MAX_ERRORS_IN_REPAIR),
        answer_chars=len(answer) if cut else None,
        echoed_chars=MAX_ECHOED_ANSWER_CHARS,
    )
    echoed = answer[:MAX_ECHOED_ANSWER_CHARS] + "…" if cut else answer
    return [{"role": "assistant", "content": echoed}, *repair.messages()]


def judge(reply: Reply, output_type: type[T], check: Callable[[T], Sequence[str]] | None) -> Judgement:
    """Parse and validate one answer; the errors are worded for the model, since they go into the repair.

    Never raises: whatever the answer holds becomes problems, and a check or validator that raises (a defect in the
    agent) becomes a CHECK_FAILED judgement, so the call is recorded either way."""
    if reply.refusal:
        return Judgement(CallOutcome.REFUSED, [f"you refused to answer: {short(reply.refusal)}"])
    text = _strip_code_fence(reply.content or "")
    if not text:
        return Judgement(CallOutcome.INVALID_JSON, ["the answer was empty; reply with one JSON object"])
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, NaN, a number over int's digit limit, deep nesting
        if reply.finish_reason == "length":
            return Judgement(
                CallOutcome.TRUNCATED,
                ["the answer was cut off before the JSON was complete; answer more concisely"],
            )
        return Judgement(CallOutcome.INVALID_JSON, [_json_problem(exc)])
    try:
        value = output_type.model_validate(data)
    except ValidationError as exc:
        return Judgement(CallOutcome.SCHEMA_INVALID, error_lines(exc))
    except Exception as exc:  # a validator raised something pydantic does not turn into an error
        return _crashed("validating", exc)
    try:
        problems = list(check(value)) if check is not None else []
    except Exception as exc:
        return _crashed("the agent's check", exc)
    if problems:
        return Judgement(CallOutcome.SCHEMA_INVALID, problems)
    return Judgement(CallOutcome.OK, [], value)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON, and jsonb cannot hold them."""
    raise ValueError(f"{name} is not a JSON number")


def _json_problem(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "the answer is not usable JSON: it is nested too deeply"
    return f"the answer is not usable JSON: {str(exc).split(':')[0]}"  # int's digit limit, without its advice


def _crashed(stage: str, exc: Exception) -> Judgement:
    return Judgement(CallOutcome.CHECK_FAILED, [f"{stage} raised {type(exc).__name__}: {exc}"], crash=exc)
