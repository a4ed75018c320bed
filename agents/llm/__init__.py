"""Structured output from any OpenAI-compatible chat endpoint, with one retry policy and a record of every call.

Why this shape:
- One client (the official `openai` package) with a configurable base URL serves OpenAI and the local servers
  (vLLM, Ollama, llama.cpp, LM Studio), asking for the strongest response format each accepts.
- The answer is untrusted data: parsed, validated with pydantic plus an agent-supplied check (e.g. "only handles
  you were shown"), and repaired at most once by sending the problems back. A second bad answer is a
  PermanentError: the job runtime dead-letters it rather than burning tokens.
- Retries live here and only here; when they keep failing the error becomes a TransientError and the job runtime
  retries the whole job later.
- Every HTTP attempt that may have reached the model, failed, cut off or not, is written through a CallLog port
  (runtime.llm_calls in production), which is also what the per-user daily token budget is summed from.

Its modules, by what they hold: `port` (what agents depend on: StructuredLLM, CallContext, StructuredAnswer),
`wire` (the request body, the strict schema, the completion read back, response format support), `transcription`
(speech to text through /audio/transcriptions, recorded like a chat call), `answers` (judging
an answer and the repair request), `policy` (classifying a failure and the retry decision, shared with the
embeddings client), `call_log` (writing records, the daily budget, an in-memory log) and `client` (LLMClient).
This package re-exports what the rest of Orrery imports, so `agents.llm` stays the one import path of the port.
"""

from agents.llm.call_log import InMemoryCallLog, next_utc_midnight
from agents.llm.client import LLMClient, open_llm_client
from agents.llm.port import CallContext, StructuredAnswer, StructuredLLM, Transcriber
from agents.llm.transcription import AudioFile, Transcript
from agents.llm.wire import ResponseFormatSupport, estimate_tokens, strict_json_schema

__all__ = [
    "AudioFile",
    "CallContext",
    "InMemoryCallLog",
    "LLMClient",
    "ResponseFormatSupport",
    "StructuredAnswer",
    "StructuredLLM",
    "Transcriber",
    "Transcript",
    "estimate_tokens",
    "next_utc_midnight",
    "open_llm_client",
    "strict_json_schema",
]
