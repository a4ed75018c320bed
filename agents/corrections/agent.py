"""CorrectionsAgent: a batch of one user's corrections, card feedback and reflections in, one decision per
interaction out; one LLM call per batch, never one per interaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from agents.corrections.schema import TARGET_KIND, CorrectionsOutput, check_decisions
from agents.handles import Listing, parse_handle
from agents.llm import CallContext, StructuredLLM
from core.corrections import CorrectionDecision
from core.llm_records import LLMUsage
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "corrections"
PROMPT_NAME = "corrections"
MEMORY_CHARS = 1200
"""A target memory's content is shown up to this long: the model rewrites it whole, so it needs most of it."""


def number(text: str, kind: str) -> int:
    """The index a checked handle names (check_decisions refused any other)."""
    handle = parse_handle(text, kind)
    assert handle is not None
    return handle.index


class Interaction(BaseModel):
    interaction_id: str
    kind: str
    at: datetime
    text: str | None = None
    verdict: str | None = None
    target_id: str | None = Field(None, description="The memory unit or concept it is about (a card's, resolved)")


class TargetMemory(BaseModel):
    memory_unit_id: str
    title: str
    content: str
    importance: float | None = None


class TargetConcept(BaseModel):
    concept_id: str
    name: str
    type: str
    description: str | None = None


class CorrectionMaterial(BaseModel):
    """One user's batch and what its interactions are about."""

    user_id: str
    interactions: list[Interaction]
    memories: list[TargetMemory] = Field(default_factory=list)
    concepts: list[TargetConcept] = Field(default_factory=list)


@dataclass(frozen=True)
class CorrectionsResult:
    user_id: str
    decisions: list[CorrectionDecision]
    usage: LLMUsage
    model: str
    prompt_name: str
    prompt_version: str


class CorrectionsAgent:
    def __init__(self, llm: StructuredLLM, *, model: str, prompt: Prompt | None = None) -> None:
        self._llm = llm
        self._model = model
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    @classmethod
    def from_settings(cls, llm: StructuredLLM, settings: Settings) -> CorrectionsAgent:
        return cls(llm, model=settings.corrections_model)

    async def run(self, material: CorrectionMaterial, *, job_id: str | None = None) -> CorrectionsResult:
        """One decision per interaction the model decided (an undecided one is left alone). No interaction: no call.

        Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        if not material.interactions:
            return self._result(material, [], LLMUsage())
        handles = {m.memory_unit_id: f"m{n}" for n, m in enumerate(material.memories, start=1)}
        handles |= {c.concept_id: f"c{n}" for n, c in enumerate(material.concepts, start=1)}
        shown = Listing({"i": len(material.interactions), "m": len(material.memories), "c": len(material.concepts)})
        answer = await self._llm.complete(
            self._prompt.render(
                interactions=[
                    {
                        "handle": f"i{n}",
                        "kind": i.kind,
                        "date": i.at.date().isoformat(),
                        "target": handles.get(i.target_id or ""),
                        "verdict": i.verdict,
                        "text": i.text,
                    }
                    for n, i in enumerate(material.interactions, start=1)
                ],
                memories=[
                    {
                        "handle": handles[m.memory_unit_id],
                        "title": m.title,
                        "content": m.content[:MEMORY_CHARS],
                        "importance": m.importance,
                    }
                    for m in material.memories
                ],
                concepts=[
                    {"handle": handles[c.concept_id], "name": c.name, "type": c.type, "description": c.description}
                    for c in material.concepts
                ],
            ),
            CorrectionsOutput,
            model=self._model,
            context=CallContext(user_id=material.user_id, agent=AGENT_NAME, job_id=job_id),
            check=lambda output: check_decisions(output, shown),
        )
        ids = {handle: entity_id for entity_id, handle in handles.items()}
        decisions = [
            CorrectionDecision(
                interaction_id=material.interactions[number(d.interaction, "i")].interaction_id,
                action=d.action,
                reason=d.reason.strip(),
                target_id=ids[d.target] if d.target and d.action in TARGET_KIND else None,
                title=d.title.strip() if d.title else None,
                content=d.content.strip() if d.content else None,
                importance=d.importance,
                description=d.description.strip() if d.description else None,
            )
            for d in answer.value.decisions
        ]
        return self._result(material, decisions, answer.usage)

    def _result(
        self, material: CorrectionMaterial, decisions: list[CorrectionDecision], usage: LLMUsage
    ) -> CorrectionsResult:
        return CorrectionsResult(
            material.user_id, decisions, usage, self._model, self._prompt.name, self._prompt.version
        )
