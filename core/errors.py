"""The three ways a job can fail, shared by agents, stores and the runtime.

Agents and stores raise these (or errors the runtime maps onto them); the runtime decides from the class alone
whether to retry, dead-letter or defer, so no job needs retry logic of its own.
"""

from __future__ import annotations

from datetime import datetime


class JobError(Exception):
    """Base class: the message must say which job/entity failed and what an operator can do."""


class TransientError(JobError):
    """Worth retrying: the same call may succeed later (LLM 429/5xx/timeout, a store briefly unreachable)."""


class PermanentError(JobError):
    """Retrying cannot help (invalid arguments, missing entity, unusable LLM answer): dead-letter at once."""


class DeferredError(JobError):
    """Not now, but nothing is wrong: run the job again at `until` (e.g. the user's daily token budget is spent)."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class BudgetExceededError(DeferredError):
    """The user's daily LLM token budget is spent: deferred to the next UTC day (counted in the worker's metrics)."""
