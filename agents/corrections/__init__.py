"""The corrections agent: a batch of one user's corrections, card feedback and reflections in, one decision per
interaction out (revise or forget a memory, revise a concept's description, add a memory, or nothing). Pure: no SQL.

Its modules: `schema` (what the model answers and the checks on it), `agent` (CorrectionsAgent and what it reads).
Its prompt is prompts/corrections.j2, its scripted answers agents/samples/corrections.json, its transaction
store/corrections_writes.py, its job jobs/corrections.py.
"""

from agents.corrections.agent import (
    AGENT_NAME,
    PROMPT_NAME,
    CorrectionMaterial,
    CorrectionsAgent,
    CorrectionsResult,
    Interaction,
    TargetConcept,
    TargetMemory,
)
from agents.corrections.schema import CorrectionsOutput, Decision, check_decisions

__all__ = [
    "AGENT_NAME",
    "PROMPT_NAME",
    "CorrectionMaterial",
    "CorrectionsAgent",
    "CorrectionsOutput",
    "CorrectionsResult",
    "Decision",
    "Interaction",
    "TargetConcept",
    "TargetMemory",
    "check_decisions",
]
