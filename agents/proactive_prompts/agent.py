"""ProactivePromptAgent: the user's recent material in, a few prompts worth bringing up out; one LLM call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agents.handles import Listing
from agents.llm import CallContext, StructuredLLM
from agents.proactive_prompts.inputs import PromptMaterial
from agents.proactive_prompts.schema import SOURCE_KINDS, ProactivePromptsOutput, check_prompts
from core.llm_records import LLMUsage
from core.vocabulary import AgentName
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "proactive_prompts"
SOURCE_AGENT = AgentName.PROACTIVE_PROMPTS.value
"""What proactive_prompts.source_agent says for the prompts it writes."""
PROMPT_NAME = "proactive_prompts"
MEMORY_CHARS = 600
"""Each memory's content is cut to this in the prompt: the gist is enough to ask about it."""


@dataclass(frozen=True)
class PromptDraft:
    """One prompt with its handles resolved to the ids they named."""

    prompt_text: str
    priority: int
    rationale: str
    suggested_timing: str
    memory_unit_ids: list[str] = field(default_factory=list)
    artifact_ids: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PromptsResult:
    user_id: str
    drafts: list[PromptDraft]
    usage: LLMUsage
    model: str
    prompt_name: str
    prompt_version: str


class ProactivePromptAgent:
    def __init__(self, llm: StructuredLLM, *, model: str, prompt: Prompt | None = None) -> None:
        self._llm = llm
        self._model = model
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    @classmethod
    def from_settings(cls, llm: StructuredLLM, settings: Settings) -> ProactivePromptAgent:
        return cls(llm, model=settings.proactive_prompts_model)

    async def run(self, material: PromptMaterial, *, job_id: str | None = None) -> PromptsResult:
        """Ask for at most `material.slots` prompts. No material or no free slot: no call, no drafts.

        Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        if material.slots <= 0 or not material.has_material:
            return self._result(material, [], LLMUsage())
        memories = [*material.memories, *material.earlier]  # one numbering: m1… the recent ones, then the earlier
        shown = Listing({"m": len(memories), "i": len(material.insights), "t": len(material.open_topics)})
        answer = await self._llm.complete(
            self._prompt.render(
                language=material.language.instruction,
                memory_profile=json.dumps(material.memory_profile, ensure_ascii=False, indent=1)
                if material.memory_profile
                else None,
                memories=[
                    {
                        "handle": f"m{n}",
                        "title": m.title,
                        "content": m.content[:MEMORY_CHARS],
                        "importance": m.importance,
                    }
                    for n, m in enumerate(material.memories, start=1)
                ],
                earlier_memories=[
                    {
                        "handle": f"m{n}",
                        "title": m.title,
                        "content": m.content[:MEMORY_CHARS],
                        "importance": m.importance,
                        "recalled_for": m.recalled_for,
                    }
                    for n, m in enumerate(material.earlier, start=len(material.memories) + 1)
                ],
                insights=[
                    {"handle": f"i{n}", "title": a.title, "narrative": a.narrative}
                    for n, a in enumerate(material.insights, start=1)
                ],
                topics=[
                    {"handle": f"t{n}", "topic": t.topic, "question": t.suggested_question}
                    for n, t in enumerate(material.open_topics, start=1)
                ],
                pending=material.pending,
                slots=material.slots,
            ),
            ProactivePromptsOutput,
            model=self._model,
            context=CallContext(user_id=material.user_id, agent=AGENT_NAME, job_id=job_id),
            check=lambda output: check_prompts(output, shown),
        )
        ids = {
            "m": [m.memory_unit_id for m in memories],
            "i": [a.artifact_id for a in material.insights],
            "t": [t.topic for t in material.open_topics],
        }
        drafts = []
        for proposed in answer.value.prompts:
            picked: dict[str, list[str]] = {kind: [] for kind in SOURCE_KINDS}
            # read by the function check_prompts read them with: only shown handles get here, each once
            for handle in dict.fromkeys(h for text in proposed.sources if (h := shown.resolve(text, SOURCE_KINDS))):
                picked[handle.kind].append(ids[handle.kind][handle.index])
            drafts.append(
                PromptDraft(
                    prompt_text=proposed.prompt_text.strip(),
                    priority=proposed.priority,
                    rationale=proposed.rationale,
                    suggested_timing=proposed.suggested_timing.value,
                    memory_unit_ids=picked["m"],
                    artifact_ids=picked["i"],
                    topics=picked["t"],
                )
            )
        return self._result(material, drafts, answer.usage)

    def _result(self, material: PromptMaterial, drafts: list[PromptDraft], usage: LLMUsage) -> PromptsResult:
        return PromptsResult(material.user_id, drafts, usage, self._model, self._prompt.name, self._prompt.version)
