"""The scripted LLM reports cached tokens the way OpenAI's automatic prompt caching does: prompts of 1,024 tokens or
more, the longest prefix seen before in 128-token steps, per model, within a TTL, the structured-output schema
counted first (agents/scripted_prompt_cache.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from agents.llm import InMemoryCallLog, LLMClient
from agents.scripted_llm import ScriptedLLMServer, ScriptedReply
from agents.scripted_prompt_cache import PromptCache, count_tokens, prompt_text, schema_text
from prompts import RenderedPrompt
from tests.agents.test_llm import CONTEXT, GOOD, Verdict

LONG = "".join(f"Line {i}: the user talked about running, work and family. " for i in range(120))  # ~1,700 tokens


def shared_prefix_tokens(a: str, b: str) -> int:
    """What a provider reports cached for `b` after `a`: their common prefix in whole tokens, in 128-token steps,
    nothing under 1,024."""
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    tokens = same // 4
    return tokens - tokens % 128 if tokens >= 1024 else 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_prompt_under_1024_tokens_is_never_cached() -> None:
    cache = PromptCache()
    short = "x" * (1023 * 4 + 3)
    assert count_tokens(short) == 1023
    assert [cache.cached_tokens("m", short) for _ in range(3)] == [0, 0, 0]


def test_the_longest_shared_prefix_counts_in_128_token_steps() -> None:
    cache = PromptCache()
    first = "a" * (1300 * 4) + "tail one"
    assert cache.cached_tokens("m", first) == 0  # nothing seen before
    assert cache.cached_tokens("m", first) == 1280  # the same prompt: all of it, down to a 128-token step
    for shared, expected in [(1100, 1024), (1152, 1152), (1279, 1152), (1023, 0)]:
        other = "a" * (shared * 4) + "b" * 2000
        assert cache.cached_tokens("m", other) == expected == shared_prefix_tokens(first, other)


def test_caches_are_per_model() -> None:
    cache = PromptCache()
    prompt = "a" * 5000
    cache.cached_tokens("gpt-4o-mini", prompt)
    assert cache.cached_tokens("gpt-4o", prompt) == 0
    assert cache.cached_tokens("gpt-4o-mini", prompt) == 1152


def test_a_prefix_expires_after_the_ttl_without_use_and_each_use_refreshes_it() -> None:
    clock = Clock()
    cache = PromptCache(ttl_s=300, clock=clock)
    prompt = "a" * 5000
    cache.cached_tokens("m", prompt)
    clock.now = 290
    assert cache.cached_tokens("m", prompt) == 1152  # used again: kept for another 300 s
    clock.now = 580
    assert cache.cached_tokens("m", prompt) == 1152
    clock.now = 881
    assert cache.cached_tokens("m", prompt) == 0  # 301 s unused: gone (and cached again from now)
    assert cache.cached_tokens("m", prompt) == 1152


def body(schema: dict[str, Any] | None, system: str, user: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if schema is not None:
        request["response_format"] = {"type": "json_schema", "json_schema": {"name": "Out", "schema": schema}}
    return request


def test_the_schema_comes_first_and_its_key_order_is_part_of_the_prefix() -> None:
    """OpenAI: the structured-output schema "serves as a prefix to the system message"; the same schema with its keys
    in another order is another prefix, as it would be to the provider's tokenizer."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    reordered = {"required": ["a"], "type": "object", "properties": {"a": {"type": "string"}}}
    text = prompt_text(body(schema, "You judge.", LONG))
    assert text.startswith(schema_text(body(schema, "", "")) + "\n\nsystem: You judge.\n\nuser: Line 0")
    cache = PromptCache()
    cache.cached_tokens("m", text)
    assert cache.cached_tokens("m", prompt_text(body(schema, "You judge.", LONG))) > 1024
    assert cache.cached_tokens("m", prompt_text(body(reordered, "You judge.", LONG))) == 0


async def test_the_server_reports_cached_tokens_in_openais_usage_and_the_client_records_them(
    server: ScriptedLLMServer, client: LLMClient, call_log: InMemoryCallLog
) -> None:
    server.enqueue(ScriptedReply.json(GOOD), ScriptedReply.json(GOOD))
    prompt = RenderedPrompt(name="probe", version="0123456789ab", system="You judge moods.", user=LONG)
    first = await client.complete(prompt, Verdict, model="gpt-4o-mini", context=CONTEXT)
    second = await client.complete(prompt, Verdict, model="gpt-4o-mini", context=CONTEXT)

    sent = prompt_text(server.chat_requests[1].body)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == count_tokens(sent)  # the schema included
    assert count_tokens(sent) > count_tokens(server.chat_requests[1].message_text()) + 50
    assert first.usage.cached_tokens == 0
    assert second.usage.cached_tokens == shared_prefix_tokens(sent, sent) > 1024
    assert [record.cached_tokens for _, record in call_log.records] == [0, second.usage.cached_tokens]


Wide = create_model(  # type: ignore[call-overload]
    "Wide",
    **{f"field_{n}": (str, Field(description=f"The {n}th of many fields, each described.")) for n in range(80)},
)
"""A schema over 1,024 tokens by itself (no agent's is, since the schemas carry only constraints)."""
WIDE_ANSWER = {f"field_{n}": "x" for n in range(80)}


async def changed_system_prompt(
    server: ScriptedLLMServer, output: type[Any], answer: dict[str, Any]
) -> tuple[int, int]:
    """(cached tokens the server reported, the shared prefix's) for a request that differs from the one before only
    by the first word of its system message."""
    call_log = InMemoryCallLog()
    async with LLMClient(base_url=server.base_url, api_key="k", call_log=call_log) as client:
        for system in ("You judge moods.", "We judge moods."):
            server.enqueue(ScriptedReply.json(answer))
            prompt = RenderedPrompt(name="probe", version="0123456789ab", system=system, user=LONG)
            await client.complete(prompt, output, model="gpt-4o-mini", context=CONTEXT)
    first, second = (prompt_text(request.body) for request in server.chat_requests)
    return call_log.records[1][1].cached_tokens, shared_prefix_tokens(first, second)


async def test_a_changed_system_prompt_reports_nothing_cached_beyond_the_schema(server: ScriptedLLMServer) -> None:
    """With a small schema nothing is cached; with a schema over 1,024 tokens by itself the schema's own 128-token
    steps are, and nothing of the system message or what follows it."""
    assert await changed_system_prompt(server, Verdict, GOOD) == (0, 0)

    with ScriptedLLMServer() as other:
        cached, shared = await changed_system_prompt(other, Wide, WIDE_ANSWER)
    schema_tokens = count_tokens(schema_text(other.chat_requests[0].body))
    assert schema_tokens >= 1024 and cached == shared == schema_tokens - schema_tokens % 128
