"""What one LLM call costs and how it is recorded: shared by the LLM client (agents) and the call ledger (store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class CallOutcome(StrEnum):
    """How one HTTP attempt ended (the CHECK constraint of runtime.llm_calls lists the same values: 0014)."""

    OK = "ok"
    INVALID_JSON = "invalid_json"
    SCHEMA_INVALID = "schema_invalid"
    TRUNCATED = "truncated"
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BAD_REQUEST = "bad_request"
    AUTH_ERROR = "auth_error"
    NOT_FOUND = "not_found"
    CHECK_FAILED = "check_failed"  # the agent's check of the answer raised: a defect in the agent, not the answer
    CANCELLED = "cancelled"  # the task making the call was cancelled (a job timeout, a shutdown) while it waited


class CallPurpose(StrEnum):
    ANSWER = "answer"
    REPAIR = "repair"


class ResponseFormatMode(StrEnum):
    """How output is constrained, strongest first; a server that rejects one is asked with the next."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    PROMPT_ONLY = "prompt_only"


@dataclass(frozen=True)
class LLMUsage:
    """What a piece of work cost: HTTP attempts made and tokens reported (or estimated when a server omits them).

    `cached_tokens` are part of `prompt_tokens` (the prompt's prefix the provider served from its cache, billed at a
    discount), as OpenAI's usage reports them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True)
class LLMCallRecord:
    """One HTTP attempt, as stored in runtime.llm_calls."""

    user_id: str
    job_id: str | None
    agent: str
    model: str
    endpoint: str
    prompt_name: str
    prompt_version: str
    purpose: CallPurpose
    response_format: ResponseFormatMode
    attempt: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    outcome: CallOutcome
    error: str | None
    cached_tokens: int = 0
    """Of `prompt_tokens`, those the provider served from its prompt cache (0 when it reports none)."""


class CallLog(Protocol):
    """Where call records go and where the budget is read from (store/llm_calls.py: PostgresCallLog)."""

    async def record(self, call: LLMCallRecord) -> None: ...

    async def tokens_used(self, user_id: str, since: datetime) -> int: ...
