"""CycleReportAgent: a cycle's numbers in, a report (narrative + content_data) out; one LLM call, none when empty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.cycle_report.inputs import CycleMaterial
from agents.cycle_report.report import content_data, growth_table
from agents.cycle_report.schema import CycleReportOutput, check_report
from agents.llm import CallContext, StructuredLLM
from core.llm_records import LLMUsage
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "cycle_report"
PROMPT_NAME = "cycle_report"
EMPTY_TITLE = "A quiet cycle"
CONTENT_CHARS = 400
"""Each highlight's and insight's text is cut to this in the prompt: the gist is enough for a narrative."""


@dataclass(frozen=True)
class CycleReport:
    user_id: str
    title: str
    narrative: str | None
    content_data: dict[str, Any]
    empty: bool
    usage: LLMUsage
    model: str
    prompt_name: str
    prompt_version: str


class CycleReportAgent:
    def __init__(self, llm: StructuredLLM | None, *, model: str, prompt: Prompt | None = None) -> None:
        self._llm = llm
        self._model = model
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    @classmethod
    def from_settings(cls, llm: StructuredLLM | None, settings: Settings) -> CycleReportAgent:
        return cls(llm, model=settings.cycle_report_model)

    async def run(self, material: CycleMaterial, *, job_id: str | None = None) -> CycleReport:
        """The report. An empty cycle makes no call (`llm` may then be None): a minimal report with the numbers and
        no narrative. Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        if material.is_empty:
            return self._report(material, EMPTY_TITLE, None, LLMUsage(), empty=True)
        if self._llm is None:
            raise ValueError("CycleReportAgent needs an LLM for a cycle with activity")
        answer = await self._llm.complete(
            self._prompt.render(**self._variables(material)),
            CycleReportOutput,
            model=self._model,
            context=CallContext(user_id=material.user_id, agent=AGENT_NAME, job_id=job_id),
            check=check_report,
        )
        value = answer.value
        return self._report(material, value.title.strip(), value.narrative.strip(), answer.usage, empty=False)

    def _variables(self, material: CycleMaterial) -> dict[str, Any]:
        return {
            "language": material.language.instruction,
            "user_name": material.user_name,
            "cycle": {
                "start": material.cycle_start.date().isoformat(),
                "end": material.cycle_end.date().isoformat(),
            },
            "counts": content_data(material, empty=False)["counts"],
            "growth": growth_table(material),
            "top_concepts": [{"name": c.name, "type": c.type, "mentions": c.mentions} for c in material.top_concepts],
            "highlights": [
                {"title": h.title, "content": h.content[:CONTENT_CHARS], "importance": h.importance}
                for h in material.highlights
            ],
            "insights": [
                {"title": i.title, "narrative": (i.narrative or "")[:CONTENT_CHARS]} for i in material.insights
            ],
        }

    def _report(
        self, material: CycleMaterial, title: str, narrative: str | None, usage: LLMUsage, *, empty: bool
    ) -> CycleReport:
        data = {
            **content_data(material, empty=empty),
            "model": None if empty else self._model,
            "prompt_version": None if empty else self._prompt.version,
        }
        return CycleReport(
            user_id=material.user_id,
            title=title,
            narrative=narrative,
            content_data=data,
            empty=empty,
            usage=usage,
            model=self._model,
            prompt_name=self._prompt.name,
            prompt_version=self._prompt.version,
        )
