"""IngestionAgent: one finished conversation in, a typed extraction ready to persist out. Pure: no SQL, no queue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agents.ingestion.attachments import attachment_views, check_attachments, views_tokens
from agents.ingestion.inputs import EarlierMemory, IngestionInput
from agents.ingestion.merge import Merger
from agents.ingestion.schema import IngestionLimits, IngestionOutput, check_limits, check_references
from agents.ingestion.windows import Line, iso_utc, message_lines, windows_of
from agents.llm import CallContext, StructuredLLM, estimate_tokens
from core.ingestion import IngestionResult, IngestionStatus
from core.llm_records import LLMUsage
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "ingestion"
PROMPT_NAME = "ingestion"
EARLIER_MEMORY_TOKENS = 250
"""Default budget of the earlier memories shown per call (ORRERY_INGESTION_EARLIER_MEMORY_TOKENS)."""
EARLIER_CONTENT_CHARS = 240
"""An earlier memory's content is shown up to this long: enough to tell the same event from a look-alike."""


def shown_earlier(memories: Sequence[EarlierMemory], budget: int) -> list[tuple[EarlierMemory, dict[str, str]]]:
    """The earlier memories the model is shown, nearest first, as many as `budget` tokens hold, each with its prompt
    line's parts (handle "p1".., date, title, content cut to EARLIER_CONTENT_CHARS). Pure, so the bench and the
    prompt agree on what a candidate costs."""
    shown: list[tuple[EarlierMemory, dict[str, str]]] = []
    used = 0
    for memory in memories:
        content = " ".join(memory.content.split())
        if len(content) > EARLIER_CONTENT_CHARS:
            content = content[: EARLIER_CONTENT_CHARS - 1].rstrip() + "…"
        line = {
            "handle": f"p{len(shown) + 1}",
            "date": iso_utc(memory.creation_ts)[:10],
            "title": " ".join(memory.title.split()),
            "content": content,
        }
        cost = estimate_tokens(" ".join(line.values())) + 4
        if used + cost > budget:
            break
        shown.append((memory, line))
        used += cost
    return shown


class IngestionAgent:
    """Turns a conversation into an IngestionResult with one LLM call per window (one for most conversations)."""

    def __init__(
        self,
        llm: StructuredLLM,
        *,
        model: str,
        input_token_budget: int,
        limits: IngestionLimits | None = None,
        prompt: Prompt | None = None,
        earlier_memory_tokens: int = EARLIER_MEMORY_TOKENS,
    ):
        self._llm = llm
        self._model = model
        self._budget = input_token_budget
        self._limits = limits or IngestionLimits()
        self._prompt = prompt or load_prompt(PROMPT_NAME)
        self._earlier_tokens = earlier_memory_tokens

    @classmethod
    def from_settings(cls, llm: StructuredLLM, settings: Settings) -> IngestionAgent:
        return cls(
            llm,
            model=settings.ingestion_model,
            input_token_budget=settings.llm_input_token_budget,
            limits=IngestionLimits.from_settings(settings),
            earlier_memory_tokens=settings.ingestion_earlier_memory_tokens,
        )

    async def run(self, data: IngestionInput, *, job_id: str | None = None) -> IngestionResult:
        """Extract. Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        conversation = data.conversation
        lines = message_lines(conversation.messages, self._budget)
        if not lines:
            return self._result(data, IngestionStatus.EMPTY)
        if not any(line.role == "user" for line in lines):
            return self._result(data, IngestionStatus.NO_USER_MESSAGES)

        attachments = attachment_views(data.attachments, self._budget)
        windows = windows_of(lines, max(self._budget - views_tokens(attachments), self._budget // 2))
        context = CallContext(user_id=conversation.user_id, agent=AGENT_NAME, job_id=job_id)
        earlier = shown_earlier(data.earlier_memories, self._earlier_tokens)
        handle_count, earlier_count, limits = len(data.existing_concepts), len(earlier), self._limits
        shown = len(attachments)
        merger = Merger(
            data.existing_concepts,
            conversation.start_time,
            [a.media_id for a in data.attachments],
            [memory for memory, _ in earlier],
        )
        usage = LLMUsage()
        for index, window in enumerate(windows, start=1):
            variables = self._variables(data, window, index, len(windows), merger.summaries)
            rendered = self._prompt.render(
                **variables, attachments=attachments, earlier_memories=[line for _, line in earlier]
            )
            answer = await self._llm.complete(
                rendered,
                IngestionOutput,
                model=self._model,
                context=context,
                check=lambda output: [
                    *check_references(output, handle_count, earlier_count),
                    *check_limits(output, limits),
                    *check_attachments(output, shown),
                ],
            )
            usage += answer.usage
            merger.add(answer.value)
        result = self._result(data, IngestionStatus.EXTRACTED, merger=merger, windows=len(windows), usage=usage)
        return result.model_copy(update={"earlier_memories_shown": earlier_count})

    def _variables(
        self, data: IngestionInput, window: list[Line], index: int, count: int, summaries: list[str]
    ) -> dict[str, Any]:
        conversation = data.conversation
        turn_context = data.turn_context.model_dump(exclude_none=True) if data.turn_context else None
        if turn_context is not None:
            turn_context = {
                name: ", ".join(map(str, value)) if isinstance(value, list) else value
                for name, value in turn_context.items()
                if value not in ([], "")
            } or None
        return {
            "language": data.language.instruction,
            "conversation": {
                "title": conversation.title,
                "start_time": iso_utc(conversation.start_time),
                "messages": [vars(line) for line in window],
            },
            "window": {"index": index, "count": count},
            "limits": asdict(self._limits),
            "earlier_summary": " ".join(summaries) or None,
            "turn_context": turn_context,
            "memory_profile": json.dumps(data.memory_profile, ensure_ascii=False, indent=1)
            if data.memory_profile
            else None,
            "existing_concepts": [
                {"handle": handle, "name": c.name, "type": c.type, "description": c.description}
                for handle, c in enumerate(data.existing_concepts, start=1)
            ],
        }

    def _result(
        self,
        data: IngestionInput,
        status: IngestionStatus,
        *,
        merger: Merger | None = None,
        windows: int = 0,
        usage: LLMUsage | None = None,
    ) -> IngestionResult:
        spent = usage or LLMUsage()
        common: dict[str, Any] = {
            "conversation_id": data.conversation.id,
            "user_id": data.conversation.user_id,
            "status": status,
            "windows": windows,
            "llm_calls": spent.calls,
            "prompt_tokens": spent.prompt_tokens,
            "completion_tokens": spent.completion_tokens,
            "model": self._model,
            "prompt_name": self._prompt.name,
            "prompt_version": self._prompt.version,
        }
        if merger is None:
            return IngestionResult(**common)
        return IngestionResult(
            **common,
            title=merger.title(),
            context_summary=" ".join(merger.summaries),
            importance_score=merger.importance,
            memory_units=list(merger.memory_units.values()),
            concepts=list(merger.concepts.values()),
            relationships=list(merger.relationships.values()),
            growth_events=list(merger.growth_events.values()),
            forward_context=merger.forward,
        )
