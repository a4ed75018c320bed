"""The port agents depend on: one validated answer of a given type for a rendered prompt, and who it is for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from pydantic import BaseModel

from core.llm_records import LLMUsage
from prompts import RenderedPrompt

if TYPE_CHECKING:
    from agents.llm.transcription import AudioFile, Transcript

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class CallContext:
    """Who a call is for: the budget is per user, and every recorded call names its agent and job."""

    user_id: str
    agent: str
    job_id: str | None = None


@dataclass(frozen=True)
class StructuredAnswer(Generic[T]):
    """A validated answer and what it cost (all attempts, including retries and the repair)."""

    value: T
    usage: LLMUsage


class StructuredLLM(Protocol):
    """The port agents depend on; LLMClient (agents/llm/client.py) is the implementation.

    `check` returns the problems pydantic cannot see, worded for the model (they go into the one repair request); it
    must return them, never raise: a check that raises is a defect, recorded as check_failed and a PermanentError."""

    async def complete(
        self,
        prompt: RenderedPrompt,
        output_type: type[T],
        *,
        model: str,
        context: CallContext,
        check: Callable[[T], Sequence[str]] | None = None,
    ) -> StructuredAnswer[T]: ...


class Transcriber(Protocol):
    """Speech to text, the port the media agent depends on; LLMClient.transcribe is the implementation."""

    async def transcribe(
        self,
        audio: AudioFile,
        *,
        prompt: RenderedPrompt,
        model: str,
        context: CallContext,
        language: str | None = None,
    ) -> Transcript:
        """What is said in `audio`, in the language it is spoken in; `language` (an ISO 639-1 code) tells the endpoint
        what to expect, when it is known."""
        ...
