"""The ingestion agent: one finished conversation in, a typed extraction ready to persist out. Pure: no SQL, no queue.

Its modules, each named for what it holds: `inputs` (what the agent reads), `schema` (what the model answers and the
checks on it), `windows` (a long conversation cut to the input budget), `attachments` (the attachments' texts in the
prompt and the check of the handles citing them), `merge` (the windows' answers as one
deduplicated result) and `agent` (IngestionAgent, which runs them). Its prompt is prompts/ingestion.j2, its scripted
answers agents/samples/ingestion.json, its transaction store/ingestion_writes.py, its job jobs/ingestion.py.
"""

from agents.ingestion.agent import AGENT_NAME, PROMPT_NAME, IngestionAgent
from agents.ingestion.inputs import (
    Attachment,
    ConversationInput,
    ConversationMessage,
    EarlierMemory,
    ExistingConcept,
    IngestionInput,
)
from agents.ingestion.schema import (
    MAX_UNRESOLVED_TOPICS,
    NAME_CHARS,
    ExtractedConcept,
    ExtractedGrowthEvent,
    ExtractedMemoryUnit,
    ExtractedRelationship,
    IngestionLimits,
    IngestionOutput,
    check_limits,
    check_references,
)
from agents.ingestion.windows import OVERLAP_FRACTION, split_into_windows

__all__ = [
    "AGENT_NAME",
    "MAX_UNRESOLVED_TOPICS",
    "NAME_CHARS",
    "OVERLAP_FRACTION",
    "PROMPT_NAME",
    "Attachment",
    "ConversationInput",
    "ConversationMessage",
    "EarlierMemory",
    "ExistingConcept",
    "ExtractedConcept",
    "ExtractedGrowthEvent",
    "ExtractedMemoryUnit",
    "ExtractedRelationship",
    "IngestionAgent",
    "IngestionInput",
    "IngestionLimits",
    "IngestionOutput",
    "check_limits",
    "check_references",
    "split_into_windows",
]
