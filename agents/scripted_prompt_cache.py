"""The scripted LLM's imitation of OpenAI's automatic prompt caching, so that tests and benchmarks see cached tokens
reported the way the provider reports them (`usage.prompt_tokens_details.cached_tokens`, part of `prompt_tokens`).

What OpenAI's prompt caching guide documents, and how it is imitated here:
- Caching is automatic for prompts of 1,024 tokens or more; a shorter prompt never reports cached tokens.
- A request reuses the longest prefix it shares with recent requests, counted in steps of 128 tokens from 1,024
  (1,024, 1,152, 1,280, …); the tokens after the first difference are not cached.
- Caches are not shared between organizations, and a prefix is cached per model: one server is one organization,
  so the cache is keyed by the request's model.
- A cached prefix stays for 5 to 10 minutes of inactivity (up to an hour off-peak): here `ttl_s`, 5 minutes by
  default, from its last use; every use refreshes it.
- The structured-output schema "serves as a prefix to the system message": the prompt is the schema first, then the
  messages in order, so a changed schema is a cache miss for everything, a changed system message keeps the schema.

What the documentation leaves open, and what is assumed:
- Tokens are the server's estimate (`count_tokens`, ~4 characters a token) of one text: the response format's
  `json_schema` object (name, schema, strict) as compact JSON with its keys in the order sent (a reordered schema is
  a different prefix, as it would be to the provider's tokenizer), then each message as "role: content". The real
  provider renders the schema in its own internal form, so its count differs from this one.
- A request's prefixes are cached when it is answered; requests that arrive together with a new prefix may all miss
  at OpenAI, while here every request after the first answered one hits.
- JSON mode and prompt-only requests carry the schema inside the system message (agents/llm/wire.py), where it is
  cached as part of that message.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

CHARS_PER_TOKEN = 4
MIN_CACHED_TOKENS = 1024
CACHE_STEP_TOKENS = 128
DEFAULT_TTL_S = 300.0


def count_tokens(text: str) -> int:
    """The server's rough tokenizer (~4 characters a token): enough for usage accounting and budgets."""
    return len(text) // CHARS_PER_TOKEN


def schema_text(body: Any) -> str:
    """The structured-output schema of a request as the server counts it ("" when the request sends none)."""
    response_format = body.get("response_format") if isinstance(body, dict) else None
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return ""
    return json.dumps(response_format.get("json_schema"), ensure_ascii=False, separators=(",", ":"))


def prompt_text(body: Any) -> str:
    """Everything a request's prompt tokens are counted from, in the order the provider reads it: the schema, then
    each message's role and content."""
    messages = body.get("messages") if isinstance(body, dict) else None
    parts = [schema_text(body)] if schema_text(body) else []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            parts.append(f"{message.get('role')}: {message_content_text(message.get('content'))}")
    return "\n\n".join(parts)


def message_content_text(content: Any) -> str:
    """A message's text; of a message in parts, its text parts (an image part's base64 is billed per image, not
    counted as text)."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


class PromptCache:
    """Prefixes of recent prompts per model, at every 128-token step from 1,024, each with its last use; shared by
    the server's handler threads."""

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_used: OrderedDict[tuple[str, bytes], float] = OrderedDict()  # oldest use first

    def cached_tokens(self, model: str, text: str) -> int:
        """The tokens of `text` a provider would report as cached for `model` now; remembers `text`'s prefixes."""
        tokens = count_tokens(text)
        if tokens < MIN_CACHED_TOKENS:
            return 0
        keys = list(self._prefix_keys(model, text, tokens))
        now = self._clock()
        with self._lock:
            while self._last_used:
                oldest, used = next(iter(self._last_used.items()))
                if now - used <= self._ttl_s:
                    break
                del self._last_used[oldest]
            cached = 0
            for size, key in keys:
                if key in self._last_used:
                    cached = size
                self._last_used[key] = now
                self._last_used.move_to_end(key)
        return cached

    @staticmethod
    def _prefix_keys(model: str, text: str, tokens: int) -> list[tuple[int, tuple[str, bytes]]]:
        """(size in tokens, key) of every cacheable prefix of `text`: 1,024 tokens, 1,152, … up to the whole."""
        digest = hashlib.sha256()
        done = 0
        keys = []
        for size in range(MIN_CACHED_TOKENS, tokens + 1, CACHE_STEP_TOKENS):
            end = size * CHARS_PER_TOKEN
            digest.update(text[done:end].encode("utf-8", "surrogatepass"))
            done = end
            keys.append((size, (model, digest.copy().digest())))
        return keys
