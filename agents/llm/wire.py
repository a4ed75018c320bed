"""What goes over the wire to an OpenAI-compatible chat endpoint and what is read back: the request body in each
response format, the strict JSON schema, the part of a completion the runtime reads, and which format each server
accepts.

Servers differ in how they constrain output, so the client asks for a strict JSON schema first and, when a server
answers that it cannot do that, falls back to JSON mode and then to plain instructions (the schema in the system
message), remembered per base URL so the 400 is paid once per process.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError, field_validator

from core.llm_records import ResponseFormatMode
from core.vocabulary import storable_text
from prompts import load_prompt

CHAT_COMPLETIONS = "/chat/completions"
MAX_RECORDED_TOKENS = 2**31 - 1
"""runtime.llm_calls keeps token counts as INTEGER."""

_MODE_ORDER = list(ResponseFormatMode)


class ResponseFormatSupport:
    """The strongest response format each base URL accepts, learnt from its 400s and shared by every client."""

    def __init__(self) -> None:
        self._modes: dict[str, ResponseFormatMode] = {}

    def mode_for(self, base_url: str) -> ResponseFormatMode:
        return self._modes.get(base_url, ResponseFormatMode.JSON_SCHEMA)

    def downgrade(self, base_url: str, rejected: ResponseFormatMode) -> ResponseFormatMode | None:
        """Remember that `rejected` does not work there; the next mode to try, or None when none is left."""
        index = _MODE_ORDER.index(rejected)
        if index + 1 >= len(_MODE_ORDER):
            return None
        weaker = _MODE_ORDER[index + 1]
        if _MODE_ORDER.index(self.mode_for(base_url)) < index + 1:
            self._modes[base_url] = weaker
        return self.mode_for(base_url)


RESPONSE_FORMAT_SUPPORT = ResponseFormatSupport()
"""Process-wide: one server's capabilities do not change between jobs."""


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token), for windowing and for servers that report no usage."""
    return math.ceil(len(text) / 4)


IMAGE_TOKENS = 765
"""What one image part is counted as when a server reports no usage: OpenAI's price of a 1024x1024 image in detail."""


def message_tokens(message: dict[str, Any]) -> int:
    """A chat message's estimated tokens: its text, plus IMAGE_TOKENS per image part (never its base64)."""
    content = message["content"]
    if isinstance(content, str):
        return estimate_tokens(content)
    return sum(
        estimate_tokens(part.get("text", "")) if part.get("type") == "text" else IMAGE_TOKENS for part in content
    )


def _sendable(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Content as UTF-8 can carry it: the text of a message, or of each text part."""
    if isinstance(content, str):
        return storable_text(content)
    return [{**part, "text": storable_text(part["text"])} if part.get("type") == "text" else part for part in content]


_SCALARS = frozenset({"string", "integer", "number", "boolean"})
_ANNOTATIONS = ("title", "default")
"""Keywords that constrain nothing: pydantic's titles repeat the property names, and strict mode has no defaults."""


@functools.cache
def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the subset OpenAI's strict structured outputs accept, as short as it can be.

    Every object lists all its properties as required and forbids others; strict mode has no optional properties, so
    optional fields are nullable instead. The schema is the first thing of every request (what a provider caches
    first, and bills on every call), so what constrains nothing is left out: titles, defaults and the models'
    docstrings (written for us; what the model must know is in the field descriptions and the prompt). A definition
    used once is inlined where it is used, and a nullable scalar is written `"type": [T, "null"]` rather than an
    `anyOf`: the same constraints (patterns, bounds, formats and enums stay), fewer tokens.
    Built once per model (pydantic's schema generation costs ~12 ms, more than the rest of an ingestion's CPU) and
    shared by every call: read it, never change it.
    """
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})
    uses = Counter(re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema) + json.dumps(definitions)))
    shared = {name: target for name, target in definitions.items() if uses[name] > 1}

    def visit(node: Any, *, model_node: bool = False) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: value for key, value in node.items() if key not in _ANNOTATIONS}
        if model_node and "properties" in node:
            node.pop("description", None)
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in shared or len(node) > 1:
                target = visit(definitions[name], model_node=True)
                node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        node = _nullable_scalar(node)
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
            node["properties"] = {name: visit(value) for name, value in node["properties"].items()}
        return {key: value if key == "properties" else visit(value) for key, value in node.items()}

    result: dict[str, Any] = visit(schema, model_node=True)
    if shared:
        result["$defs"] = {name: visit(target, model_node=True) for name, target in shared.items()}
    return result


def _nullable_scalar(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [{"type": T, ...}, {"type": "null"}]` as `{"type": [T, "null"], ...}` for a scalar T without enum
    (whose values would have to list null too); anything else as it is."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or options[1] != {"type": "null"}:
        return node
    value = options[0]
    if not isinstance(value, dict) or value.get("type") not in _SCALARS or "enum" in value or "$ref" in value:
        return node
    rest = {key: item for key, item in node.items() if key != "anyOf"}
    return {**value, "type": [value["type"], "null"], **rest}


def public_endpoint(base_url: str) -> str:
    """The base URL without credentials or query string, safe to store."""
    parts = urlsplit(base_url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _messages_for(
    messages: list[dict[str, Any]], mode: ResponseFormatMode, schema: dict[str, Any]
) -> list[dict[str, Any]]:
    """Without server-side schema enforcement, the schema travels in the system message instead."""
    if mode is ResponseFormatMode.JSON_SCHEMA:
        return messages
    instructions = load_prompt("llm_json_mode").render(schema=json.dumps(schema, indent=1)).user
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instructions}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]


def request_body(
    model: str,
    messages: list[dict[str, Any]],
    mode: ResponseFormatMode,
    schema: dict[str, Any],
    name: str,
    *,
    strict: bool,
) -> dict[str, Any]:
    """The chat completion request's JSON body, sent with the client's documented `post` for custom requests.

    Why not `chat.completions.create`: it walks its typed arguments through a TypedDict transform, trying every
    member of the message-param union for every message, and builds a `ChatCompletion`; together that was most
    of the CPU of an LLM call (bench/bench_ingest.py). The body here is plain JSON already; the client still
    does the request itself (base URL, auth headers, timeouts, its error classes).

    Texts are sent as UTF-8, which cannot carry an unpaired surrogate (JSON read from Redis, or a rejected answer
    repeated in a repair request, may hold one): it goes as U+FFFD instead of failing the request on every try.
    A message's content may be parts (text and images, `RenderedPrompt.images`): their text is sent the same way.
    """
    sendable = [{**message, "content": _sendable(message["content"])} for message in messages]
    body: dict[str, Any] = {"model": model, "messages": _messages_for(sendable, mode, schema)}
    if mode is ResponseFormatMode.JSON_SCHEMA:
        json_schema = {"name": name[:64], "schema": schema, "strict": strict}
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    elif mode is ResponseFormatMode.JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    return body


class _WireMessage(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _WireChoice(BaseModel):
    message: _WireMessage
    finish_reason: str | None = None


def _count(value: Any) -> int:
    """A token count as a server reports it: null, negative or not a number reads as 0, a huge one as the most a
    record holds."""
    return min(max(value, 0), MAX_RECORDED_TOKENS) if isinstance(value, int) else 0


class _WireUsage(BaseModel):
    """Token counts as a server reports them; null or out of range (some local servers) reads as 0 or the most a
    record holds, so a server's odd usage never stops its call from being recorded.

    The cached part of the prompt comes in one of two shapes: OpenAI's `prompt_tokens_details.cached_tokens` (also
    xAI, Groq, Azure OpenAI and vLLM with --enable-prompt-tokens-details) or DeepSeek's `prompt_cache_hit_tokens`;
    both are part of `prompt_tokens`. Either may be absent or malformed (a server that caches nothing): 0."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: Any = None
    prompt_cache_hit_tokens: Any = None

    @field_validator("prompt_tokens", "completion_tokens", mode="before")
    @classmethod
    def _countable(cls, value: Any) -> int:
        return _count(value)

    @property
    def cached_tokens(self) -> int:
        """The cached part of the prompt, never more than the prompt (runtime.llm_calls checks it is not)."""
        details = self.prompt_tokens_details
        reported = details.get("cached_tokens") if isinstance(details, dict) else None
        if reported is None:
            reported = self.prompt_cache_hit_tokens
        return min(_count(reported), self.prompt_tokens)


class WireCompletion(BaseModel):
    """The part of a chat completion the runtime reads, validated straight from the response bytes.

    Why not the client's ChatCompletion object: building it (openai's construct_type over the whole response) cost
    about a tenth of a call's CPU, for fields nothing here reads. Unknown fields are ignored, so any
    OpenAI-compatible server's extras pass.
    """

    choices: list[_WireChoice]
    usage: _WireUsage | None = None


def read_completion(body: bytes) -> WireCompletion:
    """The completion in a 200's body; raises ValidationError when it is none.

    pydantic's JSON parser refuses the escape of an unpaired surrogate, which Python's json reads: a model's answer
    holding one is read that way, so it is judged (and refused, sent back for repair) as the model's answer rather
    than retried as a broken server's."""
    try:
        return WireCompletion.model_validate_json(body)
    except ValidationError as exc:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise exc from None
        return WireCompletion.model_validate(data)


@dataclass(frozen=True)
class Reply:
    """A 200 from the server, before its content is judged."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    mode: ResponseFormatMode
    attempt: int

    @classmethod
    def of(
        cls, completion: WireCompletion, *, sent_tokens: int, latency_ms: int, mode: ResponseFormatMode, attempt: int
    ) -> Reply:
        """The reply a completion holds; without usage from the server, its tokens are estimated (none cached)."""
        choice = completion.choices[0] if completion.choices else None
        content = choice.message.content if choice else None
        usage = completion.usage
        if usage is not None:
            prompt_tokens, completion_tokens, cached_tokens = (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
            )
        else:
            prompt_tokens, completion_tokens, cached_tokens = sent_tokens, estimate_tokens(content or ""), 0
        return cls(
            content=content,
            refusal=choice.message.refusal if choice else None,
            finish_reason=choice.finish_reason if choice else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            latency_ms=latency_ms,
            mode=mode,
            attempt=attempt,
        )
