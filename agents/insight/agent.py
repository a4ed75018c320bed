"""InsightAgent: one cycle's material in, one LLM call, a typed result with every handle resolved to an id out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.insight.schema import InsightLimits, InsightOutput, check_limits, check_references, story_goals
from agents.insight.view import InsightInput, View, build_view
from agents.llm import CallContext, StructuredLLM
from core.insight import (
    ArtifactDraft,
    CommunityDraft,
    InsightArtifactType,
    InsightGrowthDraft,
    InsightResult,
    InsightStatus,
    MergeDraft,
)
from core.llm_records import LLMUsage
from core.vocabulary import EntityKind
from prompts import Prompt, load_prompt
from settings import Settings

AGENT_NAME = "insight"
PROMPT_NAME = "insight"
MIN_COMMUNITY_SIZE = 2


class InsightAgent:
    """Understands a cycle in one call: profile, graph schema, artifacts, merges, growth, community names and the
    next conversation's outlook, all in one answer (the issue's budget is three calls a cycle for three agents)."""

    def __init__(
        self,
        llm: StructuredLLM,
        *,
        model: str,
        input_token_budget: int,
        limits: InsightLimits | None = None,
        prompt: Prompt | None = None,
    ) -> None:
        self._llm = llm
        self._model = model
        self._budget = input_token_budget
        self._limits = limits or InsightLimits()
        self._prompt = prompt or load_prompt(PROMPT_NAME)

    @classmethod
    def from_settings(cls, llm: StructuredLLM, settings: Settings) -> InsightAgent:
        return cls(llm, model=settings.insight_model, input_token_budget=settings.insight_input_token_budget)

    async def run(self, data: InsightInput, *, job_id: str | None = None) -> InsightResult:
        """Raises what the LLM layer raises (DeferredError, TransientError, PermanentError)."""
        material = data.material
        view = build_view(data, self._budget)
        if not view.memory_units:
            return self._result(data, InsightStatus.EMPTY, LLMUsage())
        shown = view.shown
        answer = await self._llm.complete(
            self._prompt.render(**view.variables),
            InsightOutput,
            model=self._model,
            context=CallContext(user_id=material.user_id, agent=AGENT_NAME, job_id=job_id),
            check=lambda output: [*check_references(output, shown), *check_limits(output, self._limits)],
        )
        return self._resolve(data, view, answer.value, answer.usage)

    def _resolve(self, data: InsightInput, view: View, output: InsightOutput, usage: LLMUsage) -> InsightResult:
        """The answer with handles turned into ids; a concept merged away is replaced by its primary everywhere.

        Handles are read by the function `check_references` read them with (agents/handles.py), so a handle means
        the same to the check and here; the LLM layer hands back no answer that failed the check."""
        handles = view.shown.handles
        ids = {"m": [m.muid for m in view.memory_units], "c": [c.concept_id for c in view.concepts]}

        def item(text: str) -> tuple[str, str]:
            """(kind letter, id) of a memory unit or concept handle."""
            handle = handles.resolve(text, "mc")
            if handle is None:  # only an answer that skipped check_references gets here
                raise ValueError(f"insight: {text!r} is not a handle check_references passed")
            return handle.kind, ids[handle.kind][handle.index]

        merges = [
            MergeDraft(
                primary_id=item(merge.primary)[1],
                secondary_ids=tuple(dict.fromkeys(item(d)[1] for d in merge.duplicates)),
                reason=merge.reason.strip(),
            )
            for merge in output.concept_merges
        ]
        merged_into = {secondary: m.primary_id for m in merges for secondary in m.secondary_ids}

        def entity(text: str) -> tuple[str, str]:
            kind, found = item(text)
            return kind, merged_into.get(found, found)

        artifacts: list[ArtifactDraft] = []
        others = 0
        for artifact in output.artifacts:
            summary = artifact.artifact_type is InsightArtifactType.INSIGHT_SUMMARY
            others += not summary
            sources = [entity(source) for source in artifact.sources]
            goal = None
            if artifact.artifact_type is InsightArtifactType.GOAL_STORY:  # its one goal, checked: story_goals
                [number] = story_goals(artifact, view.shown)
                goal = entity(f"c{number}")[1]
            concept_ids = [found for kind, found in sources if kind == "c"]
            artifacts.append(
                ArtifactDraft(
                    key="insight_summary" if summary else f"artifact:{others}",
                    artifact_type=artifact.artifact_type,
                    title=artifact.title.strip(),
                    narrative=artifact.narrative.strip(),
                    memory_unit_ids=tuple(dict.fromkeys(found for kind, found in sources if kind == "m")),
                    concept_ids=tuple(dict.fromkeys([goal, *concept_ids] if goal else concept_ids)),
                    goal_concept_id=goal,
                )
            )
        growth = []
        for n, event in enumerate(output.growth_events, start=1):
            kind, found = entity(event.about)
            growth.append(
                InsightGrowthDraft(
                    key=f"growth:{n}",
                    entity_id=found,
                    entity_kind=EntityKind.MEMORY_UNIT if kind == "m" else EntityKind.CONCEPT,
                    dim_key=event.dim_key,
                    delta=event.delta,
                    rationale=event.rationale.strip(),
                )
            )
        return self._result(
            data,
            InsightStatus.WRITTEN,
            usage,
            memory_profile={**output.memory_profile.model_dump(mode="json"), **self._stamp(data)},
            knowledge_graph_schema={**output.knowledge_graph_schema.model_dump(mode="json"), **self._stamp(data)},
            artifacts=artifacts,
            merges=merges,
            growth_events=growth,
            communities=self._communities(data, view, output, merged_into),
            next_context=output.next_conversation,
        )

    def _communities(
        self, data: InsightInput, view: View, output: InsightOutput, merged_into: dict[str, str]
    ) -> list[CommunityDraft]:
        """Every detected community, named by the model when it was shown, else by its previous or fallback name;
        members merged away are counted as their primary."""
        handles = view.shown.handles  # k<n> is the n-th candidate, for the first few
        names = {h.number: c for c in output.communities if (h := handles.resolve(c.community, "k")) is not None}
        drafts: list[CommunityDraft] = []
        for n, candidate in enumerate(data.communities, start=1):
            members = tuple(sorted({merged_into.get(c, c) for c in candidate.concept_ids}))
            if len(members) < MIN_COMMUNITY_SIZE:
                continue
            named = names.get(n)
            previous = candidate.existing
            drafts.append(
                CommunityDraft(
                    key=f"community:{n}",
                    existing_id=previous.community_id if previous else None,
                    concept_ids=members,
                    name=named.name.strip() if named else (previous.name if previous else candidate.fallback_name),
                    description=(named.description.strip() or None)
                    if named
                    else (previous.description if previous else None),
                )
            )
        return drafts

    @staticmethod
    def _stamp(data: InsightInput) -> dict[str, Any]:
        return {
            "updated_at": datetime.now(UTC).isoformat(),
            "cycle_start": data.material.cycle_start.isoformat(),
            "source": "InsightAgent",
        }

    def _result(self, data: InsightInput, status: InsightStatus, usage: LLMUsage, **found: Any) -> InsightResult:
        material = data.material
        return InsightResult(
            user_id=material.user_id,
            cycle_start=material.cycle_start,
            status=status,
            detection_method=data.detection_method,
            latest_conversation=material.latest_conversation,
            llm_calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=self._model,
            prompt_name=self._prompt.name,
            prompt_version=self._prompt.version,
            **found,
        )
