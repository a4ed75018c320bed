"""NoteAgent: a short note a user wrote in, a title, a mood and tags out; one LLM call. Pure: no SQL, no queue.

Shaped like a shipped agent: it depends on the StructuredLLM port, renders its prompt by name, validates the answer
against its own schema plus a check whose problems go back to the model in the one repair request.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from agents.llm import CallContext, StructuredLLM
from core.llm_records import LLMUsage
from core.vocabulary import StorableModel
from prompts import Prompt, load_prompt

AGENT_NAME = "slice_note"
PROMPT_NAME = "slice_note"
MAX_TAGS = 3


class NoteOutput(StorableModel):
    """What the model answers."""

    title: str = Field(description="At most 8 words")
    mood: float = Field(ge=-1, le=1, description="-1 very negative, 1 very positive")
    tags: list[str] = Field(description="Lowercase single words")


@dataclass(frozen=True)
class NoteResult:
    user_id: str
    note: NoteOutput
    usage: LLMUsage
    prompt_name: str
    prompt_version: str


def check_note(output: NoteOutput) -> list[str]:
    """What the schema cannot say, worded for the model: a blank title, too many tags, a tag that is not one word."""
    problems = [] if output.title.strip() else ["title: must not be blank"]
    if len(output.tags) > MAX_TAGS:
        problems.append(f"tags: {len(output.tags)} given; give at most {MAX_TAGS}")
    for i, tag in enumerate(output.tags):
        if not (tag.isalpha() and tag.islower()):
            problems.append(f"tags[{i}]: {tag!r} is not one lowercase word")
    return problems


class NoteAgent:
    def __init__(self, llm: StructuredLLM, *, model: str, prompt: Prompt | None = None) -> None:
        self._llm = llm
        self._model = model
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    async def run(self, user_id: str, text: str, *, job_id: str | None = None) -> NoteResult:
        """Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        answer = await self._llm.complete(
            self._prompt.render(note=text),
            NoteOutput,
            model=self._model,
            context=CallContext(user_id=user_id, agent=AGENT_NAME, job_id=job_id),
            check=check_note,
        )
        return NoteResult(user_id, answer.value, answer.usage, self._prompt.name, self._prompt.version)
