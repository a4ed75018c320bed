"""The proactive prompt agent: the user's recent material in, a few prompts worth bringing up out. Pure: no SQL.

Its modules: `inputs` (what it reads), `schema` (what the model answers and the checks on it), `agent`
(ProactivePromptAgent). Its prompt is prompts/proactive_prompts.j2, its scripted answers
agents/samples/proactive_prompts.json, its transaction store/proactive_prompts_writes.py (which deduplicates against
the user's pending prompts and applies the cap), its job jobs/proactive_prompts.py.
"""

from agents.proactive_prompts.agent import (
    AGENT_NAME,
    PROMPT_NAME,
    SOURCE_AGENT,
    ProactivePromptAgent,
    PromptDraft,
    PromptsResult,
)
from agents.proactive_prompts.inputs import CycleInsight, EarlierMemory, OpenTopic, PromptMaterial, RecentMemory
from agents.proactive_prompts.schema import (
    PROMPT_CHARS,
    ProactivePromptsOutput,
    ProposedPrompt,
    Timing,
    check_prompts,
)

__all__ = [
    "AGENT_NAME",
    "PROMPT_CHARS",
    "PROMPT_NAME",
    "SOURCE_AGENT",
    "CycleInsight",
    "EarlierMemory",
    "OpenTopic",
    "ProactivePromptAgent",
    "ProactivePromptsOutput",
    "PromptDraft",
    "PromptMaterial",
    "PromptsResult",
    "ProposedPrompt",
    "RecentMemory",
    "Timing",
    "check_prompts",
]
